/**
 * File primitives the cache's rooms share (kernels, guest images, snapshots): a file's sha256, and a
 * write that a reader, or a crash, sees whole or not at all (a temp file beside the target, renamed
 * over it; rename within one folder is atomic).
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { access, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/** The sha256 of a file's contents, hex; read in 1 MiB chunks (snapshot states are hundreds of MB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Flushes a file, or a folder's entries, to the disk. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

export interface AtomicWriteOptions {
  /** Flush the new file before the rename and the folder after it, so a power cut keeps the old file or the new. */
  durable?: boolean
}

/**
 * Writes `path` through a temp file beside it (`write` fills the temp file), renamed over it: a reader
 * sees the old file or the new, whole. The temp file is removed if anything fails.
 */
export async function replaceAtomically(path: string, write: (temp: string) => Promise<void>, o: AtomicWriteOptions = {}): Promise<void> {
  const temp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`)
  try {
    await write(temp)
    if (o.durable) await fsyncPath(temp)
    await rename(temp, path)
    if (o.durable) await fsyncPath(dirname(path))
  } finally {
    await rm(temp, { force: true })
  }
}

/** Writes `data` to `path` atomically, making its folder first. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, o: AtomicWriteOptions = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await replaceAtomically(path, (temp) => writeFile(temp, data), o)
}

/** Writes `value` as indented JSON, atomically. */
export async function writeJsonAtomic(path: string, value: unknown, o: AtomicWriteOptions = {}): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, o)
}

/** The JSON in `path`, or undefined when it is missing or not JSON (a cache entry then counts as absent). */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return undefined
  }
}

export async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}
