/**
 * `spool passwd`: reads a password and prints its scrypt hash line for `auth.users[].passwordHash`.
 *
 * From a terminal it prompts twice without echo; otherwise it reads all of stdin and drops one
 * trailing newline, so `printf '%s' "$PW" | spool passwd` and `echo "$PW" | spool passwd` agree.
 * The password never appears in argv (visible in `ps`) or in the output.
 */
import type { Readable, Writable } from 'node:stream'
import { hashPassword } from '../auth/password.js'

export const PASSWD_USAGE = 'usage: spool passwd   (password from stdin, or prompted on a terminal)'

/** The process streams, injectable for tests. */
export interface PasswdIo {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown }
  stdout: Writable
  stderr: Writable
}

async function readAll(stdin: Readable): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stdin)
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer))
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '')
}

/** Reads one line from a terminal in raw mode, echoing nothing. */
function promptHidden(io: PasswdIo, prompt: string): Promise<string> {
  const { stdin } = io
  io.stderr.write(prompt)
  stdin.setRawMode?.(true)
  stdin.setEncoding('utf8')
  stdin.resume()
  return new Promise((resolve, reject) => {
    let value = ''
    const finish = () => {
      stdin.off('data', onData)
      stdin.setRawMode?.(false)
      stdin.pause()
      io.stderr.write('\n')
    }
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish()
          resolve(value)
          return
        }
        if (ch === '\u0003') {
          finish()
          reject(new Error('interrupted'))
          return
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1)
        else value += ch
      }
    }
    stdin.on('data', onData)
  })
}

/** Runs `spool passwd`; resolves with the exit code (0 ok, 2 bad usage or empty / mismatched input). */
export async function runPasswd(argv: readonly string[], io: PasswdIo): Promise<number> {
  if (argv.length > 0) {
    io.stderr.write(`spool: passwd takes no arguments\n${PASSWD_USAGE}\n`)
    return 2
  }
  let password: string
  if (io.stdin.isTTY === true) {
    password = await promptHidden(io, 'Password: ')
    const again = await promptHidden(io, 'Again: ')
    if (again !== password) {
      io.stderr.write('spool: the passwords differ\n')
      return 2
    }
  } else {
    password = await readAll(io.stdin)
  }
  if (password === '') {
    io.stderr.write('spool: empty password\n')
    return 2
  }
  io.stdout.write(`${await hashPassword(password)}\n`)
  return 0
}
