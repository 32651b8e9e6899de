/**
 * The cache's kernels folder: <kernelsDir>/<release>/{vmlinuz,virtio.cpio,kernel.json}, and
 * <kernelsDir>/suites/<suite>.json naming the release a suite resolved to last (so a warm run needs no
 * network). A kernel counts as cached only when all of it is there and matches its record.
 */
import { copyFile, mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { readJson, replaceAtomically, sha256File, writeJsonAtomic } from '../util/files.js'
import { inspectBzImage } from './bzimage.js'
import type { KernelImage } from './image.js'
import type { VirtioSupport } from './virtio.js'

interface CachedKernelRecord extends Omit<KernelImage, 'virtio'> {
  sha256: string
  /** The vmlinuz's size and modification time when its sha256 was taken: unchanged, it is not hashed again. */
  bytes?: number
  mtimeMs?: number
  fetchedAt: string
  /** Absent in records of oomlab before the virtio channel: such a kernel is fetched again. */
  virtio?: VirtioSupport
  virtioModulesBytes?: number
}

export interface RememberedSuite {
  suite: string
  release: string
  debianPackage: string
  debianVersion: string
  resolvedAt: string
}

export type CacheCheck = { ok: true; kernel: KernelImage } | { ok: false; reason?: string }

/** The modules a guest loads for virtio-serial, beside the vmlinuz. */
export const VIRTIO_CPIO = 'virtio.cpio'

function suiteFile(kernelsDir: string, suite: string): string {
  return join(kernelsDir, 'suites', `${suite}.json`)
}

function releaseDir(kernelsDir: string, release: string): string {
  return join(kernelsDir, release)
}

/** The release `suite` resolved to last time, if it was ever resolved. */
export function readRememberedSuite(kernelsDir: string, suite: string): Promise<RememberedSuite | undefined> {
  return readJson<RememberedSuite>(suiteFile(kernelsDir, suite))
}

export async function rememberSuite(kernelsDir: string, remembered: RememberedSuite): Promise<void> {
  await writeJsonAtomic(suiteFile(kernelsDir, remembered.suite), remembered)
}

/**
 * A cached kernel counts only if it is all there: record, file, matching sha256, valid header.
 * `reason` is undefined for a kernel never fetched (nothing to report).
 */
export async function checkCachedKernel(kernelsDir: string, release: string): Promise<CacheCheck> {
  const dir = releaseDir(kernelsDir, release)
  const record = await readJson<CachedKernelRecord>(join(dir, 'kernel.json'))
  if (!record) return { ok: false }
  const path = join(dir, 'vmlinuz')
  const st = await stat(path).catch(() => undefined)
  if (!st) return { ok: false, reason: 'has no vmlinuz' }
  const unchanged = st.size === record.bytes && st.mtimeMs === record.mtimeMs
  if (!unchanged && (await sha256File(path)) !== record.sha256) return { ok: false, reason: 'does not match its recorded sha256' }
  const inspection = await inspectBzImage(path)
  if (!inspection.ok) return { ok: false, reason: inspection.reason }
  if (inspection.release !== record.release) return { ok: false, reason: `holds release ${inspection.release}` }
  if (!record.virtio) return { ok: false, reason: 'has no record of its virtio modules (cached by an older oomlab)' }
  const modules = join(dir, VIRTIO_CPIO)
  if (record.virtio.kind === 'modules' && (await stat(modules).catch(() => undefined))?.size !== record.virtioModulesBytes)
    return { ok: false, reason: `has no intact ${VIRTIO_CPIO}` }
  // A record of a file hashed again (or of an older oomlab) learns its size and time, so the next check is cheap.
  if (!unchanged) await writeJsonAtomic(join(dir, 'kernel.json'), { ...record, bytes: st.size, mtimeMs: st.mtimeMs })
  const { sha256: _sha, bytes: _n, mtimeMs: _t, fetchedAt: _at, virtio, virtioModulesBytes: _b, ...kernel } = record
  return { ok: true, kernel: { ...kernel, path, virtio: virtio.kind, ...(virtio.kind === 'modules' && { virtioModules: modules }) } }
}

/** Puts the vmlinuz (and virtio modules) and then its record in place; a crash before the record fails the checks. */
export async function storeKernel(
  kernelsDir: string,
  vmlinuz: string,
  kernel: Omit<KernelImage, 'path' | 'virtio'>,
  virtio: VirtioSupport,
  modulesCpio?: string,
): Promise<KernelImage> {
  const dir = releaseDir(kernelsDir, kernel.release)
  await mkdir(dir, { recursive: true })
  const path = join(dir, 'vmlinuz')
  const modules = join(dir, VIRTIO_CPIO)
  await replaceAtomically(path, (temp) => copyFile(vmlinuz, temp))
  if (modulesCpio) await replaceAtomically(modules, (temp) => copyFile(modulesCpio, temp))
  const stored: KernelImage = { ...kernel, path, virtio: virtio.kind, ...(modulesCpio && { virtioModules: modules }) }
  await writeJsonAtomic(join(dir, 'kernel.json'), {
    ...stored,
    virtio,
    ...(modulesCpio && { virtioModulesBytes: (await stat(modules)).size }),
    sha256: await sha256File(path),
    ...(await stat(path).then((st) => ({ bytes: st.size, mtimeMs: st.mtimeMs }))),
    fetchedAt: new Date().toISOString(),
  } satisfies CachedKernelRecord)
  return stored
}
