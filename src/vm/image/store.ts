/**
 * The cache of guest images: an archive is written once per content hash into a temp file, renamed
 * into place, and recorded (size, mtime, sha256) so that a cut-short or damaged one is rebuilt; the
 * compressed and module-carrying variants are made beside it the same way; old ones are pruned.
 */
import { appendFile, copyFile, readdir, stat, readFile, writeFile, mkdir, rename, unlink } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { sha256File } from '../../util/files.js'
import { join, dirname, basename } from 'node:path'
import { execa } from 'execa'
import { file as tmpFile } from 'tmp-promise'
import { writeCpio } from './cpio.js'
import type { ImageTree } from './tree.js'
import { IN_USE_MS } from '../cache.js'
import { megabytes, type Progress } from '../../util/progress.js'
import { UserError } from '../../util/errors.js'

export interface Initramfs {
  path: string
  hash: string
  bytes: number
  /** True when an image with the same inputs was already in the cache. */
  reused: boolean
  /** Why the cached image with these inputs was not used (cut short, damaged). */
  rebuiltBecause?: string
  ms: number
}

/** Images being built by this process, by path: a matrix's kernels, prepared at once, share one build. */
const building = new Map<string, Promise<Initramfs>>()

/** Builds the image into the cache, or reuses the one with the same hash. Keeps the newest few. */
export async function buildInitramfs(cache: string, tree: ImageTree, name = 'guest', progress?: Progress): Promise<Initramfs> {
  const dir = join(cache, 'initramfs')
  await mkdir(dir, { recursive: true })
  const path = join(dir, `${name}-${await tree.hash()}.cpio`)
  return ensureImage(path, {
    hash: basename(path).slice(name.length + 1, -'.cpio'.length),
    about: ` (~${Math.round(tree.bytes() / 1e6)} MB)`,
    write: (tmp) => writeCpio(tmp, tree.entries.values(), (n) => progress?.('image', `guest image: writing ${basename(path)}, ${megabytes(n)}`)),
    made: () => pruneOldImages(dir, name, basename(path)),
  })
}

/**
 * The image compressed with zstd, for kernels that unpack it (see zstdInitrd). The kernel frees the
 * initrd's pages once it has unpacked them and fills them with a poison byte, so they are not zero and
 * every snapshot's state holds them: 42 MB compressed instead of 130 MB takes ~90 MB off each state,
 * which every restore loads. Made beside the image, checked like it; named after it with a "z".
 */
export async function zstdImage(cache: string, image: Initramfs): Promise<Initramfs> {
  const hash = createHash('sha256').update(image.hash).update(ZSTD_ARGS.join(' ')).digest('hex').slice(0, 16)
  const name = `${basename(image.path).replace(/-[0-9a-f]{16}\.cpio$/, '')}z`
  return ensureImage(join(cache, 'initramfs', `${name}-${hash}.cpio`), {
    hash,
    about: '',
    write: async (tmp) => {
      // To stdout: given an output file, zstd would copy the image's times onto it.
      const r = await execa('zstd', [...ZSTD_ARGS, '-c', image.path], { reject: false, stdin: 'ignore', stdout: { file: tmp } })
      if (r.failed) throw new UserError(`could not compress the guest image with zstd: ${r.code === 'ENOENT' ? 'zstd is not installed; install it with `apt-get install zstd` (or run `bash scripts/setup.sh`)' : String(r.stderr).trim() || `exit ${r.exitCode}`}`)
    },
  })
}

/** Level 3 (zstd's default), on all cores. */
const ZSTD_ARGS = ['-q', '-3', '-T0']

/**
 * Whether a kernel unpacks a zstd initramfs: CONFIG_RD_ZSTD, in Linux since 5.9. A kernel oomlab built
 * says so from its .config; Debian's set it (bullseye's 5.10 and every later one boot it); a kernel
 * given by path may lack it: its image stays plain.
 */
export function zstdInitrd(kernel: { source: 'debian' | 'file' | 'build'; release: string; initramfs?: readonly string[] }): boolean {
  if (kernel.initramfs) return kernel.initramfs.includes('zstd')
  const [major = 0, minor = 0] = kernel.release.split(/[.-]/).map(Number)
  return kernel.source === 'debian' && (major > 5 || (major === 5 && minor >= 9))
}

/**
 * The image with a kernel's virtio modules appended as a second archive (the kernel unpacks both): one
 * file per image and modules, as QEMU takes one -initrd. Made beside the image, checked like it.
 */
export async function imageWithModules(cache: string, image: Initramfs, modulesCpio: string): Promise<Initramfs> {
  const modules = await readFile(modulesCpio)
  const hash = createHash('sha256').update(image.hash).update(modules).update('aligned').digest('hex').slice(0, 16)
  return ensureImage(join(cache, 'initramfs', `labmod-${hash}.cpio`), {
    hash,
    about: '',
    write: async (tmp) => {
      await copyFile(image.path, tmp)
      // The kernel takes a plain archive only at a 4-byte boundary ("invalid magic at start of compressed
      // archive" otherwise, and the rest is lost); zeros between archives are skipped. A plain image
      // ends aligned, a compressed one anywhere.
      await appendFile(tmp, Buffer.alloc((4 - (image.bytes % 4)) % 4))
      await appendFile(tmp, modules)
    },
  })
}

interface ImageWrite {
  hash: string
  /** After "for the guest image" in a full disk's message, e.g. " (~137 MB)". */
  about: string
  write: (tmp: string) => Promise<unknown>
  /** After a new image is in place. */
  made?: () => Promise<void>
}

/**
 * The image at `path`: reused when whole (checkImage), else written by `write` into a temp file beside it
 * and renamed into place. One build per path in this process (a matrix's kernels, prepared at once, share it).
 */
function ensureImage(path: string, o: ImageWrite): Promise<Initramfs> {
  const pending = building.get(path) ?? makeImage(path, o).finally(() => building.delete(path))
  building.set(path, pending)
  return pending
}

async function makeImage(path: string, o: ImageWrite): Promise<Initramfs> {
  const t0 = performance.now()
  const { hash } = o
  const problem = await checkImage(path)
  if (problem === undefined) return { path, hash, bytes: (await stat(path)).size, reused: true, ms: performance.now() - t0 }
  const dir = dirname(path)
  const tmp = await tmpFile({ tmpdir: dir, prefix: `.${basename(path, '.cpio')}-`, postfix: '.partial' })
  try {
    await o.write(tmp.path)
    // The record goes last: an image without one is rebuilt, so a crash in between costs a rebuild only.
    const sum = await sha256File(tmp.path)
    await rename(tmp.path, path)
    const st = await stat(path)
    await writeFile(`${path}.sha256`, `${sum}  ${st.size}  ${st.mtimeMs}\n`)
    await o.made?.()
    return { path, hash, bytes: st.size, reused: false, ms: performance.now() - t0, ...(problem !== 'absent' && { rebuiltBecause: problem }) }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new UserError(`no space left in ${dir} for the guest image${o.about}: free some, or point OOMLAB_CACHE_DIR elsewhere`, 1)
    throw err
  } finally {
    await tmp.cleanup().catch(() => undefined)
  }
}

/**
 * undefined when the cached image is whole, else why not ('absent' if missing). Cheap on each use: the
 * size and modification time recorded when it was built; only a file touched since is hashed again.
 */
export async function checkImage(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined)
  if (!st) return 'absent'
  const record = (await readFile(`${path}.sha256`, 'utf8').catch(() => '')).trim().split(/\s+/)
  if (record.length !== 3) return `${basename(path)} has no checksum record`
  if (Number(record[1]) !== st.size) return `${basename(path)} is ${st.size} bytes, ${record[1]} expected (cut short?)`
  if (Number(record[2]) === st.mtimeMs) return undefined
  if ((await sha256File(path)) !== record[0]) return `${basename(path)} does not match its sha256 (damaged)`
  await writeFile(`${path}.sha256`, `${record[0]}  ${record[1]}  ${st.mtimeMs}\n`)
  return undefined
}

/**
 * Removes this name's older images but the newest two, and never one used within the hour: another
 * run (another checkout of the project) may be booting from it.
 */
export async function pruneOldImages(dir: string, name: string, keep: string): Promise<void> {
  const images = (await readdir(dir)).filter((f) => f.startsWith(`${name}-`) && f.endsWith('.cpio') && f !== keep)
  const withTimes = await Promise.all(
    images.map(async (f) => {
      const made = (await stat(join(dir, f))).mtimeMs
      const used = (await stat(join(dir, `${f}.used`)).catch(() => undefined))?.mtimeMs ?? made
      return { f, made, used }
    }),
  )
  withTimes.sort((a, b) => b.made - a.made)
  const now = Date.now()
  for (const { f, used } of withTimes.slice(2)) {
    if (now - used < IN_USE_MS) continue
    for (const p of [f, `${f}.sha256`, `${f}.used`]) await unlink(join(dir, p)).catch(() => undefined)
  }
}
