// ESLint flat config: typescript-eslint's type-checked rules, plus the
// architecture rules from STYLE.md: the queue core imports none of the adapters, and the
// adapters use the core through its ports (only src/compose.ts wires QueueManager).
import tseslint from 'typescript-eslint'

export default tseslint.config(
  // packages/aedes is the vendored aedes fork (JavaScript, aedes' own style); its tests run in test:aedes.
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'packages/**', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's test()/describe() return promises the runner itself awaits.
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-empty': ['error', { allowEmptyCatch: false }],
    },
  },
  {
    // The MQTT edge is the only code that knows aedes / MQTT packets (STYLE.md). src/queue has its
    // own, stricter block below (flat config: the later block wins for those files).
    files: ['src/**/*.ts'],
    ignores: ['src/protocol/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['aedes', 'aedes-*', 'mqtt-packet'],
              message: 'Only src/protocol imports aedes / mqtt-packet (STYLE.md).',
            },
            {
              regex: '(^|/)queue/manager(\\.js)?$',
              message:
                'Outside src/queue, use the core through its ports (QueueService, PartitionHost, QueueAdmin); only src/compose.ts wires QueueManager.',
            },
          ],
        },
      ],
    },
  },
  {
    // etcd is the cluster's business alone: nothing else may grow a dependency on it.
    files: ['src/**/*.ts'],
    ignores: ['src/cluster/**', 'src/protocol/**', 'src/queue/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['aedes', 'aedes-*', 'mqtt-packet'],
              message: 'Only src/protocol imports aedes / mqtt-packet (STYLE.md).',
            },
            { group: ['etcd3', 'cockatiel'], message: 'Only src/cluster talks to etcd (STYLE.md).' },
            {
              regex: '(^|/)queue/manager(\\.js)?$',
              message:
                'Outside src/queue, use the core through its ports (QueueService, PartitionHost, QueueAdmin); only src/compose.ts wires QueueManager.',
            },
          ],
        },
      ],
    },
  },
  {
    // The MQTT edge sees the core as a QueueService, never as the manager.
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)queue/manager(\\.js)?$',
              message:
                'Outside src/queue, use the core through its ports (QueueService, PartitionHost, QueueAdmin); only src/compose.ts wires QueueManager.',
            },
          ],
        },
      ],
    },
  },
  {
    // The composition root: the one place outside src/queue that builds the manager.
    files: ['src/compose.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['aedes', 'aedes-*', 'mqtt-packet'],
              message: 'Only src/protocol imports aedes / mqtt-packet (STYLE.md).',
            },
            { group: ['etcd3', 'cockatiel'], message: 'Only src/cluster talks to etcd (STYLE.md).' },
          ],
        },
      ],
    },
  },
  {
    // LevelDB is storage's business alone (one kernel in src/storage/level/). This is the typescript-eslint
    // twin of no-restricted-imports, so it adds to the layer rules above instead of replacing them.
    files: ['src/**/*.ts'],
    ignores: ['src/storage/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['classic-level', 'classic-level/*'],
              message: 'Only src/storage opens LevelDB (src/storage/level/open.ts).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/queue/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['aedes*', 'mqtt-packet', 'classic-level', '@grpc/*', 'etcd3', 'prom-client', 'pino'],
              message: 'src/queue is the core: it owns ports, adapters implement them (STYLE.md).',
            },
            {
              group: ['../protocol/*', '../storage/*', '../cluster/*', '../observability/*', '../config/*'],
              message: 'src/queue must not depend on adapters (STYLE.md).',
            },
          ],
        },
      ],
    },
  },
)
