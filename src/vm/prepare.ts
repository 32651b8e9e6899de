/**
 * Guests for the Lab: prepared once per run (kernel, image, accelerator, a snapshot of a booted guest
 * whose agent waits), then restored pristine for each experiment and reached through RemoteOs.
 */
import { stat } from 'node:fs/promises'
import { resolveKernel, DEFAULT_KERNEL } from '../kernel/resolve.js'
import { kernelFromImage } from '../kernel/image.js'
import { buildKernel } from '../kernel/build/build.js'
import { imageWithModules, zstdImage, zstdInitrd } from './image/store.js'
import { additionImage, labImage, type ImageAddition } from './image/recipes.js'
import { chooseAccel } from './accel.js'
import type { MachineSpec } from './vm.js'
import { reapStaleVmDirs } from './owned-dirs.js'
import { ensureSnapshot, qemuBuildId, type SnapshotIds } from './snapshot/store.js'
import { agentReady, type PreparedGuest } from './restore.js'
import { LAB_DEFAULTS } from './lab-defaults.js'
import { cacheLimit, enforceLimit, formatBytes, markUsed, stampsOf } from './cache.js'
import { cacheDir } from '../util/paths.js'
import { UserError, errorMessage } from '../util/errors.js'
import { which } from '../util/which.js'
import type { Progress } from '../util/progress.js'

export interface GuestChoice {
  /** Suite name or Debian kernel version (default bookworm). */
  kernel?: string
  /** A bzImage the user built; wins over `kernel`. */
  kernelImage?: string
  /** A source tree (or its tarball) oomlab builds the kernel from (cached by its key); wins over both. */
  kernelSrc?: string
  accel?: 'auto' | 'kvm' | 'tcg'
  memoryMiB?: number
  cpus?: number
  append?: string[]
  refresh?: boolean
  /** From QEMU start to the agent ready, when a snapshot is made (default 60 s). */
  bootTimeoutMs?: number
  /**
   * What the caller adds to the lab guest's userland (the agent alone), as data: e.g. vitest and the
   * native fault tests of a CI runner with cgroup v2 (`oomlab soak`). Its machine's size unless told otherwise.
   */
  addition?: ImageAddition
  /**
   * The agent's channel: 'auto' is virtio-serial where the kernel has it (Debian's kernels), else the
   * second UART; 'serial' is the UART always, as for a guest with an addition that bundles tests.
   */
  channel?: 'auto' | 'serial'
}

export interface PrepareOptions {
  log?: (line: string) => void
  /** Long steps as they go: the kernel's download, the image, the snapshot's boot (a live line on a terminal). */
  progress?: Progress
  onConsole?: (line: string) => void
  signal?: AbortSignal
}

export async function prepareLabGuest(choice: GuestChoice, o: PrepareOptions = {}): Promise<PreparedGuest> {
  const log = o.log ?? (() => undefined)
  const qemu = which('qemu-system-x86_64')
  if (!qemu) throw new UserError('qemu-system-x86_64 is missing: the experiments need a VM on this host; install it with `apt-get install qemu-system-x86` (or run `bash scripts/setup.sh`)')
  const cache = cacheDir()
  reapStaleVmDirs(log)
  const t0 = performance.now()
  const kernel = choice.kernelSrc
    ? (await buildKernel(choice.kernelSrc, { cacheDir: cache, log: (line) => log(`kernel build: ${line}`), ...(o.progress && { progress: o.progress }), ...(o.signal && { signal: o.signal }) })).kernel
    : choice.kernelImage
    ? await kernelFromImage(choice.kernelImage)
    : await resolveKernel(choice.kernel ?? DEFAULT_KERNEL, { cacheDir: cache, log, ...(o.progress && { progress: o.progress }), ...(choice.refresh && { refresh: true }), ...(o.signal && { signal: o.signal }) })
  const t1 = performance.now()
  const plainImage = choice.addition
    ? await additionImage(choice.addition, { cache, log, ...(o.progress && { progress: o.progress }), ...(o.signal && { signal: o.signal }) })
    : await labImage(cache, o.progress)
  // A guest that runs a bundle of tests itself (the soak's runner) stays on the UART; the others take virtio where the kernel has it.
  const channel = !choice.addition?.bundle && channelWanted(choice) === 'auto' && (kernel.virtio === 'builtin' || kernel.virtio === 'modules') ? 'virtio' : 'serial'
  const packed = zstdInitrd(kernel) ? await zstdImage(cache, plainImage) : plainImage
  const image = channel === 'virtio' && kernel.virtioModules ? await imageWithModules(cache, packed, kernel.virtioModules) : packed
  const defaults = choice.addition?.machine ?? LAB_DEFAULTS
  const t2 = performance.now()
  // Marked used before the snapshot is made: another run's eviction meanwhile leaves them alone.
  await markUsed([...new Set([image.path, packed.path, plainImage.path].flatMap((initrd) => stampsOf(cache, { kernelPath: kernel.path, release: kernel.release, initrd })))])
  log(`guest image: ${image.reused ? 'reused' : 'built'} ${(image.bytes / 1e6).toFixed(0)} MB in ${(image.ms / 1000).toFixed(1)} s`)
  const accel = await chooseAccel({ want: choice.accel ?? 'auto', cache, kernel: kernel.path, qemu, log, ...(o.signal && { signal: o.signal }) })
  const t3 = performance.now()
  const spec: MachineSpec = {
    qemu,
    kernel: kernel.path,
    initrd: image.path,
    accel: accel.accel,
    memoryMiB: choice.memoryMiB ?? defaults.memoryMiB,
    cpus: choice.cpus ?? defaults.cpus,
    append: choice.append ?? [],
    channel,
  }
  const kst = await stat(kernel.path)
  const ids: SnapshotIds = { kernelId: `${kernel.release} ${kernel.versionString} ${kst.size} ${kst.mtimeMs}`, initrdId: image.hash, qemuId: await qemuBuildId(qemu, cache) }
  const snapshot = await ensureSnapshot(spec, {
    cacheDir: cache,
    ids,
    ready: agentReady,
    log: (line) => log(`snapshot: ${line}`),
    ...(o.progress && { progress: o.progress }),
    bootTimeoutMs: choice.bootTimeoutMs ?? LAB_DEFAULTS.bootTimeoutMs,
    ...(o.onConsole && { onConsole: o.onConsole }),
    ...(o.signal && { signal: o.signal }),
  })
  const t4 = performance.now()
  await keepCacheBounded(cache, stampsOf(cache, { kernelPath: kernel.path, release: kernel.release, initrd: image.path, snapshotKey: snapshot.key }), log)
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`
  log(`${kernel.release} (${accel.accel}): snapshot ${snapshot.made ? `made in ${s(snapshot.makeMs ?? 0)}` : 'reused'}, ${(snapshot.bytes / 1e6).toFixed(0)} MB; prepared in ${s(t4 - t0)} (kernel ${s(t1 - t0)}, image ${s(t2 - t1)}, accel ${s(t3 - t2)}, snapshot ${s(t4 - t3)})`)
  return {
    spec,
    ids,
    cacheDir: cache,
    kernel: { name: kernel.name, release: kernel.release, source: kernel.source, path: kernel.path },
    snapshot,
    bootTimeoutMs: choice.bootTimeoutMs ?? LAB_DEFAULTS.bootTimeoutMs,
    timings: { kernelMs: t1 - t0, imageMs: t2 - t1, accelMs: t3 - t2, snapshotMs: t4 - t3 },
  }
}

/** The channel asked for: the choice's, else OOMLAB_CHANNEL's ('serial' keeps the agent on the UART, to compare or to work around a kernel). */
function channelWanted(choice: GuestChoice): 'auto' | 'serial' {
  if (choice.channel) return choice.channel
  const env = process.env.OOMLAB_CHANNEL
  if (env === undefined || env === '' || env === 'auto' || env === 'serial') return env === 'serial' ? 'serial' : 'auto'
  throw new UserError(`OOMLAB_CHANNEL=${JSON.stringify(env)}: expected auto (virtio-serial where the kernel has it) or serial (the second UART)`)
}

/** Marks what this run uses, then evicts the least recently used entries past OOMLAB_CACHE_LIMIT, naming them. */
async function keepCacheBounded(cache: string, used: string[], log: (line: string) => void): Promise<void> {
  await markUsed(used)
  const limit = cacheLimit()
  // The run has what it needs: a cache it cannot tidy is said, not a reason to fail.
  const r = await enforceLimit(cache, limit).catch((err: unknown) => void log(`cache: could not keep it under ${formatBytes(limit)}: ${errorMessage(err)}`))
  if (!r) return
  const { evicted, total, over } = r
  for (const e of evicted) log(`cache: over its ${formatBytes(limit)} limit (OOMLAB_CACHE_LIMIT): evicted ${e.kind} ${e.id} (${e.about}, ${formatBytes(e.bytes)}, last used ${new Date(e.usedMs).toISOString().slice(0, 16).replace('T', ' ')} UTC)`)
  if (over) log(`cache: ${formatBytes(total)}, over its ${formatBytes(limit)} limit (OOMLAB_CACHE_LIMIT), but ${over}`)
}

/** Makes the prepared guest's snapshot again, into another cache folder (the bench); returns its ms. */
export async function remakeSnapshotIn(g: PreparedGuest, dir: string, o: { signal?: AbortSignal; onConsole?: (line: string) => void } = {}): Promise<number> {
  const t0 = performance.now()
  // A long soak of boots keeps its kernel and image marked used: no other run prunes them meanwhile.
  await markUsed(stampsOf(g.cacheDir, { kernelPath: g.spec.kernel, release: g.kernel.release, initrd: g.spec.initrd }))
  const s = await ensureSnapshot(g.spec, { cacheDir: dir, ids: g.ids, ready: agentReady, bootTimeoutMs: g.bootTimeoutMs, ...(o.signal && { signal: o.signal }), ...(o.onConsole && { onConsole: o.onConsole }) })
  return s.makeMs ?? performance.now() - t0
}
