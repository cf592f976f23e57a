/**
 * Opening a LevelDB database the one way every store under src/storage does it: create the
 * directory, open classic-level with buffer keys and values, check the store's format record, and
 * close the handle again if anything after the open fails (so a failed open never holds the lock).
 */
import { mkdir } from 'node:fs/promises'
import { ClassicLevel } from 'classic-level'
import { LevelError, LevelErrorCodes, levelFailure } from './errors.js'

/** A classic-level handle with buffer keys and values: the only kind the stores use. */
export type LevelDb = ClassicLevel<Buffer, Buffer>

/** Where a store keeps its format version, and which version this code writes and reads. */
export interface LevelFormat {
  /** Named in the mismatch error: `unsupported <name> format …`. */
  readonly name: string
  /** The key of the format record; its value is one byte, the version. */
  readonly key: Buffer
  /** 1..255. */
  readonly version: number
}

/**
 * Opens (creating if needed) the database at `location` and checks its format record: a database
 * without one is taken as this version and gets the record (fsynced); another version, or a record
 * that is not one byte, fails with {@link LevelErrorCodes.formatMismatch}.
 *
 * `load`, if given, runs on the open handle before it is returned (a store reading its counters);
 * if it throws, the handle is closed and its error is rethrown as it is.
 *
 * @throws {LevelError} `LEVEL_OPEN_FAILED` or `LEVEL_FORMAT_MISMATCH`; or whatever `load` threw.
 */
export async function openLevel(
  location: string,
  format: LevelFormat,
  load?: (db: LevelDb) => Promise<void>,
): Promise<LevelDb> {
  try {
    await mkdir(location, { recursive: true })
  } catch (error) {
    throw levelFailure(LevelErrorCodes.openFailed, `creating ${location}`, error)
  }
  const db: LevelDb = new ClassicLevel<Buffer, Buffer>(location, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
  })
  try {
    await db.open()
  } catch (error) {
    throw levelFailure(LevelErrorCodes.openFailed, `open of ${location}`, error)
  }
  try {
    await checkFormat(db, format)
    if (load !== undefined) await load(db)
  } catch (error) {
    await closeAfterFailure(db, error)
    throw error
  }
  return db
}

async function checkFormat(db: LevelDb, format: LevelFormat): Promise<void> {
  let stored: Buffer | undefined
  try {
    stored = await db.get(format.key)
    if (stored === undefined) await db.put(format.key, Buffer.from([format.version]), { sync: true })
  } catch (error) {
    throw levelFailure(LevelErrorCodes.openFailed, 'format check', error)
  }
  if (stored !== undefined && (stored.length !== 1 || stored[0] !== format.version)) {
    throw new LevelError(
      LevelErrorCodes.formatMismatch,
      `unsupported ${format.name} format ${stored.toString('hex')} in ${db.location} (expected ${format.version})`,
    )
  }
}

/** Closes a handle whose open failed later on; a close failure is reported with the first error. */
async function closeAfterFailure(db: LevelDb, first: unknown): Promise<void> {
  try {
    await db.close()
  } catch (error) {
    const detail = first instanceof Error ? first.message : String(first)
    throw levelFailure(LevelErrorCodes.openFailed, `close after "${detail}"`, error)
  }
}
