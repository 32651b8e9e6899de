/**
 * Guests for the Lab: prepared once per run (kernel, image, accelerator, a snapshot of a booted guest
 * whose agent waits), then restored pristine for each experiment and reached through RemoteOs.
 */
import { stat } from 'node:fs/promises'
import { readStat } from '../proc/procfs.js'
import type { Socket } from 'node:net'
import { resolveKernel, kernelFromImage, DEFAULT_KERNEL, type KernelImage } from './kernels.js'
import { labImage } from './initramfs.js'
import { chooseAccel } from './accel.js'
import { GuestVm, reapStaleVmDirs, type MachineSpec } from './guest-vm.js'
import { ensureSnapshot, restoreFromSnapshot, qemuBuildId, type Snapshot, type SnapshotIds } from './snapshot.js'
import { RemoteOs } from '../os/remote.js'
import type { Duplex } from '../os/wire.js'
import type { MachineStats } from '../os/os.js'
import { cacheDir } from '../util/paths.js'
import { UserError } from '../util/errors.js'
import { which } from '../util/which.js'
import { timeoutScale } from '../util/timeout-scale.js'

export interface GuestChoice {
  /** Suite name or Debian kernel version (default bookworm). */
  kernel?: string
  /** A bzImage the user built; wins over `kernel`. */
  kernelImage?: string
  accel?: 'auto' | 'kvm' | 'tcg'
  memoryMiB?: number
  cpus?: number
  append?: string[]
  refresh?: boolean
  /** From QEMU start to the agent ready, when a snapshot is made (default 60 s). */
  bootTimeoutMs?: number
}

/** Everything a worker needs to restore a guest: plain JSON, handed from vitest's global setup. */
export interface PreparedGuest {
  spec: MachineSpec
  ids: SnapshotIds
  cacheDir: string
  kernel: Pick<KernelImage, 'name' | 'release' | 'source' | 'path'>
  snapshot: Snapshot
  bootTimeoutMs: number
  /** How long each step took (ms). */
  timings: { kernelMs: number; imageMs: number; accelMs: number; snapshotMs: number }
}

/**
 * 1024 MiB: the experiments need 192M for the hog and little else; every MiB the guest touched is in
 * its state, and a smaller state restores faster.
 */
export const LAB_DEFAULTS = { memoryMiB: 1024, cpus: 1, bootTimeoutMs: 60_000, restoreTimeoutMs: 30_000 }

/** A net.Socket as the wire's line stream. */
export function socketDuplex(s: Socket): Duplex {
  s.setEncoding('utf8')
  return { write: (t) => void s.write(t), onData: (fn) => s.on('data', fn), offData: (fn) => s.off('data', fn) }
}

/** The agent's handshake: at boot, its "ready"; after a restore, an answer to a ping. */
async function agentReady(vm: GuestVm, phase: 'booted' | 'restored'): Promise<void> {
  let ready!: () => void
  const said = new Promise<void>((resolve) => (ready = resolve))
  const os = new RemoteOs(socketDuplex(vm.agent), { name: 'guest', explain: () => vm.failure(), onReady: () => ready() })
  try {
    if (phase === 'booted') await said
    else await os.ping()
  } finally {
    await os.dispose()
  }
}

export async function prepareLabGuest(choice: GuestChoice, o: { log?: (line: string) => void; onConsole?: (line: string) => void; signal?: AbortSignal } = {}): Promise<PreparedGuest> {
  const log = o.log ?? (() => undefined)
  const qemu = which('qemu-system-x86_64')
  if (!qemu) throw new UserError('qemu-system-x86_64 is missing: the experiments need a VM on this host; install it with `apt-get install qemu-system-x86` (or run `bash scripts/setup.sh`)')
  const cache = cacheDir()
  reapStaleVmDirs(log)
  const t0 = performance.now()
  const kernel = choice.kernelImage
    ? await kernelFromImage(choice.kernelImage)
    : await resolveKernel(choice.kernel ?? DEFAULT_KERNEL, { cacheDir: cache, log, ...(choice.refresh && { refresh: true }), ...(o.signal && { signal: o.signal }) })
  const t1 = performance.now()
  const image = await labImage(cache)
  const t2 = performance.now()
  log(`guest image: ${image.reused ? 'reused' : 'built'} ${(image.bytes / 1e6).toFixed(0)} MB in ${(image.ms / 1000).toFixed(1)} s`)
  const accel = await chooseAccel({ want: choice.accel ?? 'auto', cache, kernel: kernel.path, qemu, log, ...(o.signal && { signal: o.signal }) })
  const t3 = performance.now()
  const spec: MachineSpec = {
    qemu,
    kernel: kernel.path,
    initrd: image.path,
    accel: accel.accel,
    memoryMiB: choice.memoryMiB ?? LAB_DEFAULTS.memoryMiB,
    cpus: choice.cpus ?? LAB_DEFAULTS.cpus,
    append: choice.append ?? [],
  }
  const kst = await stat(kernel.path)
  const ids: SnapshotIds = { kernelId: `${kernel.release} ${kernel.versionString} ${kst.size} ${kst.mtimeMs}`, initrdId: image.hash, qemuId: await qemuBuildId(qemu) }
  const snapshot = await ensureSnapshot(spec, {
    cacheDir: cache,
    ids,
    ready: agentReady,
    log: (line) => log(`snapshot: ${line}`),
    bootTimeoutMs: choice.bootTimeoutMs ?? LAB_DEFAULTS.bootTimeoutMs,
    ...(o.onConsole && { onConsole: o.onConsole }),
    ...(o.signal && { signal: o.signal }),
  })
  const t4 = performance.now()
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

/** An Os on a freshly restored guest; disposing of it stops the guest. */
export class GuestOs extends RemoteOs {
  /** Host ms from the restore's start to the agent answering. */
  restoreMs = 0

  constructor(
    readonly vm: GuestVm,
    release: string,
  ) {
    super(socketDuplex(vm.agent), { name: `guest ${release}`, explain: () => vm.failure(), scale: timeoutScale(), disposable: true })
    // QEMU closes the socket as it exits: let it finish, so its console can say why (a panic, the agent's last words).
    vm.agent.on('close', () => void Promise.race([vm.exited, new Promise((r) => setTimeout(r, 2000))]).then(() => this.break(new Error('the connection to the guest closed'))))
    void vm.exited.then(() => this.break(new Error('QEMU exited')))
  }

  override stats(): MachineStats {
    const stat = this.vm.pid !== undefined ? readStat(this.vm.pid) : undefined
    return { ...super.stats(), restoreMs: Math.round(this.restoreMs), ...(stat && { qemuCpuMs: (stat.utime + stat.stime) * 10 }) }
  }

  override async dispose(): Promise<void> {
    await super.dispose()
    await this.vm.dispose()
  }
}

export async function openGuestOs(g: PreparedGuest, o: { log?: (line: string) => void; onConsole?: (line: string) => void; signal?: AbortSignal } = {}): Promise<GuestOs> {
  const t0 = performance.now()
  const { vm, snapshot } = await restoreFromSnapshot(g.spec, {
    cacheDir: g.cacheDir,
    ids: g.ids,
    ready: agentReady,
    bootTimeoutMs: g.bootTimeoutMs,
    timeoutMs: LAB_DEFAULTS.restoreTimeoutMs * timeoutScale(),
    ...(o.log && { log: o.log }),
    ...(o.onConsole && { onConsole: o.onConsole }),
    ...(o.signal && { signal: o.signal }),
  })
  if (snapshot.remadeBecause) o.log?.(`snapshot remade: ${snapshot.remadeBecause}`)
  const os = new GuestOs(vm, g.kernel.release)
  os.restoreMs = performance.now() - t0
  return os
}

/** Makes the prepared guest's snapshot again, into another cache folder (the bench); returns its ms. */
export async function remakeSnapshotIn(g: PreparedGuest, dir: string, o: { signal?: AbortSignal } = {}): Promise<number> {
  const t0 = performance.now()
  const s = await ensureSnapshot(g.spec, { cacheDir: dir, ids: g.ids, ready: agentReady, bootTimeoutMs: g.bootTimeoutMs, ...(o.signal && { signal: o.signal }) })
  return s.makeMs ?? performance.now() - t0
}
