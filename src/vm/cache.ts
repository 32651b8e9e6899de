/**
 * The cache of kernels, guest images and snapshots (~/.cache/oom-group-lab): what is in it, what can
 * still be used, and a bound on its size. Every entry has a "used" stamp, touched when a run prepares
 * it and on each restore; the least recently used go first when the cache is over its limit.
 *
 *   kernels/<release>/                 a kernel (vmlinuz, kernel.json); kernels/suites/<suite>.json names one per suite
 *   initramfs/<name>-<hash>.cpio       a guest image (+ .sha256); lab-inputs-<key> notes name the lab's image
 *   snapshots/<key>.{state,json}       a saved guest (+ .lock while it is made; older caches also have a .ram beside it)
 *   kernels/built/<key>/               a kernel built from source (bzImage, config, build.json)
 *   kernels/build/<id>/                a source tree's build folder; kernels/src/<sha>/ an unpacked tarball:
 *                                      not under the size limit (a build folder is what makes the next build
 *                                      incremental), pruned when their tree is gone or after 30 days unused
 *
 * Only names of these shapes are ever listed or removed.
 */
import { readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { beingMade } from './snapshot/store.js'
import { BUILD_FILES, BUILD_ID, BUILT_KEY, SOURCE_ID, builtDir, sourcesDir } from '../kernel/build/layout.js'

export type EntryKind = 'kernel' | 'image' | 'snapshot' | 'build' | 'source'

/** What the size limit leaves alone: a tree's build folder and an unpacked tarball (minutes of work each to make again). */
export const UNLIMITED: readonly EntryKind[] = ['build', 'source']

export interface CacheEntry {
  kind: EntryKind
  /** A kernel's release, an image's file name, a snapshot's key. */
  id: string
  /** What a person reads: a snapshot's kernel, an image's size. */
  about: string
  files: string[]
  /** Blocks on disk, not apparent sizes (the older snapshots' RAM files are sparse). */
  bytes: number
  madeMs: number
  usedMs: number
  /** A kernel some suite names now (kernels only). */
  named?: boolean
  /** A snapshot a live process is making: never stale, never evicted. */
  making?: boolean
  /** For a snapshot: the kernel release and image file it was made of; for a built kernel, its release. */
  madeOf?: { release?: string; image?: string }
  /** Why it can never be used again; undefined when it can. */
  stale?: string
}

/** 4 GiB: a four-kernel matrix (four snapshots of ~0.4 GB, their kernels, the image) fits with room to spare. */
export const DEFAULT_LIMIT_BYTES = 4 * 1024 ** 3

/** Entries used this recently belong to a run that may still be going: never evicted. */
export const IN_USE_MS = 60 * 60 * 1000

const USED = '.used'
const SNAPSHOT_KEY = /^[0-9a-f]{24}$/
const IMAGE = /^[a-z][a-z-]*-([0-9a-f]{16})\.cpio$/
const RELEASE = /^\d+\.\d+[\w.+~-]*$/

/** OOMLAB_CACHE_LIMIT: bytes, or with a K/M/G suffix (powers of 1024); 0 turns the bound off. */
export function cacheLimit(env = process.env.OOMLAB_CACHE_LIMIT): number {
  if (env === undefined || env === '') return DEFAULT_LIMIT_BYTES
  const m = /^(\d+(?:\.\d+)?)([KMG]?)i?B?$/i.exec(env.trim())
  if (!m) throw new Error(`OOMLAB_CACHE_LIMIT=${JSON.stringify(env)}: expected a size such as 4G, 500M or 0 (no limit)`)
  return Math.round(Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase()))
}

/** Marks cache entries as used now (a missing stamp is made). */
export async function markUsed(paths: string[]): Promise<void> {
  const now = new Date()
  for (const p of paths) await utimes(p, now, now).catch(() => writeFile(p, '').catch(() => undefined))
}

/** The stamps of what a guest is made of: its kernel (when the cache holds it), its image, its snapshot. */
export function stampsOf(cache: string, o: { kernelPath: string; release: string; initrd: string; snapshotKey?: string }): string[] {
  return [
    // A kernel's own folder: kernels/<release>/, or kernels/built/<key>/ for one built from source.
    ...(o.kernelPath.startsWith(`${cache}/`) ? [join(dirname(o.kernelPath), USED)] : []),
    `${o.initrd}${USED}`,
    ...(o.snapshotKey !== undefined ? [join(cache, 'snapshots', `${o.snapshotKey}${USED}`)] : []),
  ]
}

async function sizeOf(files: string[]): Promise<{ bytes: number; madeMs: number }> {
  let bytes = 0
  let madeMs = 0
  for (const f of files) {
    const st = await stat(f).catch(() => undefined)
    if (!st) continue
    bytes += st.blocks * 512
    if (!f.endsWith(USED)) madeMs = Math.max(madeMs, st.mtimeMs)
  }
  return { bytes, madeMs }
}

/** The later of its stamp and its making: a snapshot made again keeps its old stamp until it is used. */
const usedAt = async (stamp: string, madeMs: number) => Math.max(madeMs, (await stat(stamp).catch(() => undefined))?.mtimeMs ?? 0)
const list = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).sort()
const readJson = async <T>(path: string): Promise<T | undefined> => {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return undefined
  }
}

type SnapshotRecord = { inputs?: string[]; files?: { kernel: string; initrd: string } }

/**
 * A snapshot's kernel is the one it was made of: the file its record names (or, for records older
 * than that field, the cached kernel of its release), of the size and time its key holds. Undefined:
 * not known (a kernel from outside the cache, in an old record), so not called stale.
 */
async function kernelUnchanged(cache: string, record: SnapshotRecord, kernelId: string[]): Promise<boolean | undefined> {
  const release = kernelId[0]
  const path = record.files?.kernel ?? (release && RELEASE.test(release) ? join(cache, 'kernels', release, 'vmlinuz') : undefined)
  if (path === undefined) return undefined
  const st = await stat(path).catch(() => undefined)
  if (!st) return record.files ? false : undefined
  return String(st.size) === kernelId.at(-2) && String(st.mtimeMs) === kernelId.at(-1)
}

/** Everything in the cache, with what makes an entry unusable. `qemuId` is the installed QEMU's build. */
export async function listCache(cache: string, qemuId?: string): Promise<CacheEntry[]> {
  const entries: CacheEntry[] = []

  const kernelsDir = join(cache, 'kernels')
  const named = new Set<string>()
  for (const f of await list(join(kernelsDir, 'suites'))) {
    const r = await readJson<{ release?: string }>(join(kernelsDir, 'suites', f))
    if (r?.release) named.add(r.release)
  }
  for (const release of await list(kernelsDir)) {
    if (!RELEASE.test(release)) continue
    const dir = join(kernelsDir, release)
    const { bytes, madeMs } = await sizeOf((await list(dir)).map((f) => join(dir, f)))
    const whole = (await stat(join(dir, 'vmlinuz')).catch(() => undefined)) !== undefined
    entries.push({
      kind: 'kernel',
      id: release,
      about: named.has(release) ? 'named by a suite' : 'named by no suite (a version asked for, or one a suite moved past)',
      named: named.has(release),
      files: [dir],
      bytes,
      madeMs,
      usedMs: await usedAt(join(dir, USED), madeMs),
      ...(!whole && { stale: 'no vmlinuz in it' }),
    })
  }

  for (const key of await list(builtDir(cache))) {
    if (!BUILT_KEY.test(key)) continue
    const dir = builtDir(cache, key)
    const record = await readJson<{ release?: string; tree?: string }>(join(dir, 'build.json'))
    const { bytes, madeMs } = await sizeOf((await list(dir)).map((f) => join(dir, f)))
    const whole = record !== undefined && (await stat(join(dir, 'bzImage')).catch(() => undefined)) !== undefined
    entries.push({
      kind: 'kernel',
      id: `built/${key}`,
      about: `${record?.release ?? '?'} built from ${record?.tree ?? '?'}`,
      named: false,
      files: [dir],
      bytes,
      madeMs,
      usedMs: await usedAt(join(dir, USED), madeMs),
      ...(record?.release && { madeOf: { release: record.release } }),
      ...(!whole && { stale: 'no bzImage or record in it' }),
    })
  }
  for (const id of await list(join(cache, 'kernels', 'build'))) {
    if (!BUILD_ID.test(id)) continue
    const dir = join(cache, 'kernels', 'build', id)
    const tree = (await readFile(join(dir, BUILD_FILES.tree), 'utf8').catch(() => '')).trim()
    const bytes = Number((await readFile(join(dir, BUILD_FILES.bytes), 'utf8').catch(() => '0')).trim()) || 0
    const madeMs = (await stat(join(dir, BUILD_FILES.log)).catch(() => undefined))?.mtimeMs ?? (await stat(dir)).mtimeMs
    const treeThere = tree !== '' && (await stat(tree).catch(() => undefined)) !== undefined
    entries.push({ kind: 'build', id: `build/${id}`, about: `build folder of ${tree || '?'}`, files: [dir], bytes, madeMs, usedMs: await usedAt(join(dir, USED), madeMs), ...(!treeThere && { stale: `its tree ${tree || '?'} is gone` }) })
  }
  for (const id of await list(sourcesDir(cache))) {
    if (!SOURCE_ID.test(id)) continue
    const dir = join(sourcesDir(cache), id)
    const origin = await readJson<{ tarball?: string; top?: string }>(join(dir, 'origin.json'))
    const bytes = Number((await readFile(join(dir, BUILD_FILES.bytes), 'utf8').catch(() => '0')).trim()) || 0
    const madeMs = (await stat(join(dir, 'origin.json')).catch(() => undefined))?.mtimeMs ?? (await stat(dir)).mtimeMs
    entries.push({ kind: 'source', id: `src/${id}`, about: `${origin?.top ?? '?'} unpacked from ${origin?.tarball ?? '?'}`, files: [dir], bytes, madeMs, usedMs: await usedAt(join(dir, USED), madeMs), ...(!origin && { stale: 'never finished unpacking' }) })
  }

  const imagesDir = join(cache, 'initramfs')
  const imageByHash = new Map<string, string>()
  for (const f of await list(imagesDir)) {
    const hash = IMAGE.exec(f)?.[1]
    if (!hash) continue
    imageByHash.set(hash, f)
    const path = join(imagesDir, f)
    const files = [path, `${path}.sha256`, `${path}${USED}`]
    const { bytes } = await sizeOf(files)
    // The image's own time: checking it rewrites its .sha256.
    const madeMs = (await stat(path).catch(() => undefined))?.mtimeMs ?? 0
    entries.push({ kind: 'image', id: f, about: `guest image ${(bytes / 1e6).toFixed(0)} MB`, files, bytes, madeMs, usedMs: await usedAt(`${path}${USED}`, madeMs) })
  }

  const snapDir = join(cache, 'snapshots')
  const keys = new Set((await list(snapDir)).map((f) => f.slice(0, f.indexOf('.') >>> 0)).filter((k) => SNAPSHOT_KEY.test(k)))
  for (const key of keys) {
    const base = join(snapDir, key)
    // .ram and .ram.partial: what snapshots made before their RAM went into the state left beside it.
    const files = ['.json', '.state', '.ram', '.state.partial', '.ram.partial', '.lock', USED].map((s) => `${base}${s}`)
    const { bytes, madeMs } = await sizeOf(files)
    const making = await beingMade(cache, key)
    const record = await readJson<SnapshotRecord>(`${base}.json`)
    const input = (prefix: string) => record?.inputs?.find((i) => i.startsWith(prefix))?.slice(prefix.length)
    const kernelId = input('kernel:')?.split(' ') ?? []
    const hash = input('initrd:')
    const image = record?.files ? record.files.initrd.slice(record.files.initrd.lastIndexOf('/') + 1) : hash && imageByHash.get(hash)
    const kernelOk = record ? await kernelUnchanged(cache, record, kernelId) : undefined
    const imageOk = record?.files ? (await stat(record.files.initrd).catch(() => undefined)) !== undefined : hash ? imageByHash.has(hash) : undefined
    const stale = making
      ? undefined
      : !record
        ? 'no record: a snapshot never finished'
        : kernelOk === false
          ? `its kernel ${kernelId[0] ?? '?'} is gone or changed`
          : imageOk === false
            ? 'its guest image is gone'
            : qemuId !== undefined && input('qemu:') !== qemuId
              ? 'made by another QEMU build'
              : record.inputs?.includes('ram:file')
                ? 'its RAM is in a file beside the state, a format no longer restored'
                : undefined
    const mem = record?.inputs?.[record.inputs.indexOf('-m') + 1]
    entries.push({
      kind: 'snapshot',
      id: key,
      about: making ? 'being made now' : `kernel ${kernelId[0] ?? '?'}${record?.inputs?.includes('-m') ? `, ${mem} MiB` : ''}`,
      files,
      bytes,
      madeMs,
      usedMs: await usedAt(`${base}${USED}`, madeMs),
      making,
      madeOf: { ...(kernelId[0] && { release: kernelId[0] }), ...(image && { image }) },
      ...(stale && { stale }),
    })
  }
  return entries
}

async function remove(e: CacheEntry): Promise<void> {
  for (const f of e.files) await rm(f, { recursive: true, force: true })
}

/** The snapshots made of a kernel or an image: they cannot be used without it. */
const madeOf = (entries: CacheEntry[], e: CacheEntry) =>
  entries.filter((s) => s.kind === 'snapshot' && !s.making && (e.kind === 'kernel' ? s.madeOf?.release === e.id : e.kind === 'image' && s.madeOf?.image === e.id))

/**
 * Removes what can never be used again (a snapshot of a kernel, image or QEMU that is gone, one that
 * never finished), kernels no suite names that were not used for `unnamedAfterMs` with their snapshots,
 * and notes that name a missing image.
 */
export async function pruneCache(cache: string, o: { qemuId?: string; now?: number; unnamedAfterMs?: number } = {}): Promise<CacheEntry[]> {
  const now = o.now ?? Date.now()
  const unnamedAfter = o.unnamedAfterMs ?? 30 * 24 * 3600 * 1000
  const entries = await listCache(cache, o.qemuId)
  const oldKernels = entries.filter((e) => (e.kind === 'kernel' || UNLIMITED.includes(e.kind)) && !e.named && now - e.usedMs > unnamedAfter)
  const gone = [...new Set([...entries.filter((e) => e.stale !== undefined), ...oldKernels, ...oldKernels.flatMap((k) => madeOf(entries, k))])]
  for (const e of gone) await remove(e)
  const imagesDir = join(cache, 'initramfs')
  for (const f of await list(imagesDir)) {
    if (!/^lab-inputs-[0-9a-f]+$/.test(f)) continue
    const target = (await readFile(join(imagesDir, f), 'utf8').catch(() => '')).trim()
    if (!(await stat(target).catch(() => undefined))) await rm(join(imagesDir, f), { force: true })
  }
  return gone
}

/**
 * Keeps the cache under `limitBytes`: evicts the least recently used entries (with a kernel or an
 * image, the snapshots made of it), never one used within IN_USE_MS or being made. Returns what it
 * evicted and, when it could not get under the limit, why.
 */
export async function enforceLimit(cache: string, limitBytes: number, o: { now?: number } = {}): Promise<{ evicted: CacheEntry[]; total: number; over?: string }> {
  const now = o.now ?? Date.now()
  const entries = (await listCache(cache)).filter((e) => !UNLIMITED.includes(e.kind))
  let total = entries.reduce((s, e) => s + e.bytes, 0)
  const evicted = new Set<CacheEntry>()
  if (limitBytes <= 0 || total <= limitBytes) return { evicted: [], total }
  const idle = (e: CacheEntry) => !e.making && now - e.usedMs >= IN_USE_MS
  for (const e of entries.filter(idle).sort((a, b) => a.usedMs - b.usedMs)) {
    if (total <= limitBytes) break
    if (evicted.has(e)) continue
    const dependents = madeOf(entries, e).filter((d) => !evicted.has(d))
    // A kernel or image whose snapshot is in use stays: the snapshot needs it.
    if (!dependents.every(idle)) continue
    for (const x of [e, ...dependents]) {
      await remove(x)
      evicted.add(x)
      total -= x.bytes
    }
  }
  return { evicted: [...evicted], total, ...(total > limitBytes && { over: 'everything left was used within the hour' }) }
}

export function formatBytes(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(0)} MiB` : `${(n / 1024).toFixed(0)} KiB`
}
