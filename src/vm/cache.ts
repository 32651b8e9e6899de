/**
 * The cache of kernels, guest images and snapshots (~/.cache/oom-group-lab): what is in it, what can
 * still be used, and a bound on its size. Every entry has a "used" stamp, touched each time a run
 * prepares it; the least recently used go first when the cache is over its limit.
 *
 *   kernels/<release>/            a kernel (vmlinuz, kernel.json); kernels/suites/<suite>.json names one per suite
 *   initramfs/<name>-<hash>.cpio  a guest image (+ .sha256); lab-inputs-<key> notes point at the lab's
 *   snapshots/<key>.{ram,state,json}  a saved guest (+ .used)
 */
import { readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export type EntryKind = 'kernel' | 'image' | 'snapshot'

export interface CacheEntry {
  kind: EntryKind
  /** A kernel's release, an image's file name, a snapshot's key. */
  id: string
  /** What a person reads: a snapshot's kernel, an image's size. */
  about: string
  files: string[]
  /** Blocks on disk, not apparent sizes (a RAM file is sparse). */
  bytes: number
  madeMs: number
  usedMs: number
  /** Why it can never be used again; undefined when it can. */
  stale?: string
}

/** 4 GiB: a four-kernel matrix (four snapshots of ~0.4 GB, their kernels, two images) fits twice. */
export const DEFAULT_LIMIT_BYTES = 4 * 1024 ** 3

/** Entries used this recently belong to a run that may still be going: never evicted. */
export const IN_USE_MS = 60 * 60 * 1000

const USED = '.used'

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

export const kernelStamp = (cache: string, release: string) => join(cache, 'kernels', release, USED)
export const imageStamp = (imagePath: string) => `${imagePath}${USED}`
export const snapshotStamp = (cache: string, key: string) => join(cache, 'snapshots', `${key}${USED}`)

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

const exists = async (p: string) => (await stat(p).catch(() => undefined)) !== undefined

/** A snapshot's kernel: the file it was made from, of the size and time its key says (else, for older records, its release in the cache). */
async function kernelThere(path: string | undefined, kernelId: string[], cached: Set<string>): Promise<boolean> {
  if (path === undefined) return kernelId[0] !== undefined && cached.has(kernelId[0])
  const st = await stat(path).catch(() => undefined)
  return st !== undefined && String(st.size) === kernelId.at(-2) && String(st.mtimeMs) === kernelId.at(-1)
}

const usedAt = async (stamp: string, fallback: number) => (await stat(stamp).catch(() => undefined))?.mtimeMs ?? fallback
const list = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).sort()

/** Everything in the cache, with what makes an entry unusable. `qemuId` is the installed QEMU's build. */
export async function listCache(cache: string, qemuId?: string): Promise<CacheEntry[]> {
  const entries: CacheEntry[] = []

  const kernelsDir = join(cache, 'kernels')
  const named = new Set<string>()
  for (const f of await list(join(kernelsDir, 'suites'))) {
    const r = JSON.parse(await readFile(join(kernelsDir, 'suites', f), 'utf8').catch(() => '{}')) as { release?: string }
    if (r.release) named.add(r.release)
  }
  const kernelReleases = new Set<string>()
  for (const release of await list(kernelsDir)) {
    if (release === 'suites' || release === 'apt') continue
    const dir = join(kernelsDir, release)
    const files = (await list(dir)).map((f) => join(dir, f))
    const { bytes, madeMs } = await sizeOf(files.filter((f) => !f.endsWith(USED)))
    const whole = files.some((f) => f.endsWith('/vmlinuz'))
    if (whole) kernelReleases.add(release)
    entries.push({
      kind: 'kernel',
      id: release,
      about: named.has(release) ? 'named by a suite' : 'named by no suite (a version asked for, or one a suite moved past)',
      files: [dir],
      bytes,
      madeMs,
      usedMs: await usedAt(join(dir, USED), madeMs),
      ...(!whole && { stale: 'no vmlinuz in it' }),
    })
  }

  const imagesDir = join(cache, 'initramfs')
  const images = new Set<string>()
  for (const f of await list(imagesDir)) {
    if (!f.endsWith('.cpio')) continue
    const path = join(imagesDir, f)
    const files = [path, `${path}.sha256`, `${path}${USED}`]
    const { bytes, madeMs } = await sizeOf(files)
    images.add(f.replace(/^[a-z-]+?-([0-9a-f]{16})\.cpio$/, '$1'))
    entries.push({ kind: 'image', id: f, about: `guest image ${(bytes / 1e6).toFixed(0)} MB`, files, bytes, madeMs, usedMs: await usedAt(`${path}${USED}`, madeMs) })
  }

  const snapDir = join(cache, 'snapshots')
  const keys = new Set((await list(snapDir)).map((f) => f.replace(/\..*$/, '')))
  for (const key of keys) {
    const base = join(snapDir, key)
    const files = ['.json', '.state', '.ram', '.state.partial', '.ram.partial', '.lock', USED].map((s) => `${base}${s}`)
    const { bytes, madeMs } = await sizeOf(files)
    const record = JSON.parse(await readFile(`${base}.json`, 'utf8').catch(() => 'null')) as { inputs?: string[]; files?: { kernel: string; initrd: string } } | null
    const input = (prefix: string) => record?.inputs?.find((i) => i.startsWith(prefix))?.slice(prefix.length)
    const kernelId = input('kernel:')?.split(' ') ?? []
    const release = kernelId[0]
    const stale = !record
      ? 'no record: a snapshot never finished'
      : !(await kernelThere(record.files?.kernel, kernelId, kernelReleases))
        ? `its kernel ${release ?? '?'} is gone or changed`
        : !(record.files ? await exists(record.files.initrd) : images.has(input('initrd:') ?? ''))
          ? 'its guest image is gone'
          : qemuId !== undefined && input('qemu:') !== qemuId
            ? 'made by another QEMU build'
            : undefined
    entries.push({
      kind: 'snapshot',
      id: key,
      about: `kernel ${release ?? '?'}${record?.inputs?.includes('-m') ? `, ${record.inputs[record.inputs.indexOf('-m') + 1]} MiB` : ''}`,
      files: files,
      bytes,
      madeMs,
      usedMs: await usedAt(`${base}${USED}`, madeMs),
      ...(stale && { stale }),
    })
  }
  return entries
}

async function remove(e: CacheEntry): Promise<void> {
  for (const f of e.files) await rm(f, { recursive: true, force: true })
}

/**
 * Removes what can never be used again (a snapshot of a kernel, image or QEMU that is gone), kernels no
 * suite names that were not used for `unnamedAfterMs`, and notes that point at a missing image.
 */
export async function pruneCache(cache: string, o: { qemuId?: string; now?: number; unnamedAfterMs?: number } = {}): Promise<CacheEntry[]> {
  const now = o.now ?? Date.now()
  const unnamedAfter = o.unnamedAfterMs ?? 30 * 24 * 3600 * 1000
  const entries = await listCache(cache, o.qemuId)
  const gone = entries.filter((e) => e.stale !== undefined || (e.kind === 'kernel' && e.about.startsWith('named by no suite') && now - e.usedMs > unnamedAfter))
  for (const e of gone) await remove(e)
  // Snapshots of a kernel just removed are stale now.
  const after = gone.some((e) => e.kind === 'kernel') ? (await listCache(cache, o.qemuId)).filter((e) => e.kind === 'snapshot' && e.stale !== undefined) : []
  for (const e of after) await remove(e)
  const imagesDir = join(cache, 'initramfs')
  for (const f of await list(imagesDir)) {
    if (!f.startsWith('lab-inputs-')) continue
    const target = (await readFile(join(imagesDir, f), 'utf8').catch(() => '')).trim()
    if (!(await stat(target).catch(() => undefined))) await rm(join(imagesDir, f), { force: true })
  }
  return [...gone, ...after]
}

/**
 * Keeps the cache under `limitBytes`: evicts the least recently used entries (with a kernel or an
 * image, the snapshots made of it), never one used within IN_USE_MS. Returns what it evicted and, when it could not get under
 * the limit, why.
 */
export async function enforceLimit(cache: string, limitBytes: number, o: { now?: number } = {}): Promise<{ evicted: CacheEntry[]; total: number; over?: string }> {
  const now = o.now ?? Date.now()
  const entries = await listCache(cache)
  let total = entries.reduce((s, e) => s + e.bytes, 0)
  const evicted: CacheEntry[] = []
  if (limitBytes <= 0 || total <= limitBytes) return { evicted, total }
  const candidates = entries.filter((e) => now - e.usedMs >= IN_USE_MS).sort((a, b) => a.usedMs - b.usedMs)
  for (const e of candidates) {
    if (total <= limitBytes) break
    if (evicted.includes(e)) continue
    await remove(e)
    evicted.push(e)
    total -= e.bytes
    // A kernel's or an image's snapshots cannot be used without it.
    if (e.kind !== 'snapshot')
      for (const d of (await listCache(cache)).filter((x) => x.kind === 'snapshot' && x.stale !== undefined)) {
        await remove(d)
        evicted.push(candidates.find((c) => c.id === d.id) ?? d)
        total -= d.bytes
      }
  }
  return { evicted, total, ...(total > limitBytes && { over: 'everything left was used within the hour' }) }
}

export function formatBytes(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(0)} MiB` : `${(n / 1024).toFixed(0)} KiB`
}
