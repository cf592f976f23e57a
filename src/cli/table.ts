/**
 * Plain-text tables for the CLI: a header row, columns padded to their widest cell, numbers aligned
 * right, two spaces between columns, no trailing spaces. Meant for people; scripts use `--json`.
 */
export type Cell = string | number

export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly Cell[]>): string {
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((row) => typeof row[i] === 'number'))
  const text = [headers, ...rows].map((row) => headers.map((_, i) => String(row[i] ?? '')))
  const widths = headers.map((_, i) => Math.max(...text.map((row) => row[i]!.length)))
  return text
    .map((row) =>
      row
        .map((cell, i) => (numeric[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

/** `key: value` lines with the values aligned. */
export function formatFields(fields: ReadonlyArray<readonly [string, Cell]>): string {
  const width = Math.max(...fields.map(([key]) => key.length)) + 1
  return fields.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}`).join('\n')
}

/** Shortens `text` to `max` characters, marking the cut with `…`; control characters become spaces. */
export function truncate(text: string, max: number): string {
  const flat = text.replace(/[\u0000-\u001f\u007f]/g, ' ')
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`
}
