/**
 * A guest for one experiment: restored from its kernel's snapshot, reached through its agent as an Os,
 * thrown away after. What the vitest workers import (preparing a guest is src/vm/prepare.ts's, once per run).
 */
import type { Socket } from 'node:net'
import { readStat } from '../proc/procfs.js'
import { GuestVm, type MachineSpec, type VmHooks } from './vm.js'
import { claimAhead, type ClaimedAhead } from './ahead.js'
import { errorMessage } from '../util/errors.js'
import { readyWithin, restoreFromSnapshot, type Snapshot, type SnapshotIds } from './snapshot/store.js'
import { RemoteOs } from '../os/remote.js'
import type { Duplex } from '../os/wire.js'
import type { MachineStats } from '../os/os.js'
import type { KernelImage } from '../kernel/image.js'
import { timeoutScale } from '../util/timeout-scale.js'
import { markUsed, stampsOf } from './cache.js'
import { LAB_DEFAULTS } from './lab-defaults.js'

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
  /** The socket of a process holding guests of this snapshot restored ahead (src/vm/ahead.ts), if one does. */
  ahead?: string
}

/** A net.Socket as the wire's line stream. */
export function socketDuplex(s: Socket): Duplex {
  s.setEncoding('utf8')
  return { write: (t) => void s.write(t), onData: (fn) => s.on('data', fn), offData: (fn) => s.off('data', fn) }
}

/** The agent's handshake: at boot, its "ready"; after a restore, an answer to a ping. */
export async function agentReady(vm: GuestVm, phase: 'booted' | 'restored'): Promise<void> {
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

/** An Os on a freshly restored guest; disposing of it stops the guest. */
export class GuestOs extends RemoteOs {
  /** Host ms from the restore's start to the agent answering (for a guest restored ahead: its load, then its resume here). */
  restoreMs = 0
  /** Host ms the experiment waited for its guest: the restore, or for a guest restored ahead, only its resume. */
  waitedMs = 0
  restoredAhead = false

  constructor(
    readonly vm: GuestVm,
    release: string,
    scale = timeoutScale(),
  ) {
    super(socketDuplex(vm.agent), { name: `guest ${release}`, explain: () => vm.failure(), scale, disposable: true })
    // QEMU closes the socket as it exits: let it finish, so its console can say why (a panic, the agent's last words).
    vm.agent.on('close', () => void Promise.race([vm.exited, new Promise((r) => setTimeout(r, 2000))]).then(() => this.break(new Error('the connection to the guest closed'))))
    void vm.exited.then(() => this.break(new Error('QEMU exited')))
  }

  override stats(): MachineStats {
    const stat = this.vm.pid !== undefined ? readStat(this.vm.pid) : undefined
    const incident = this.vm.incident()
    return { ...super.stats(), accel: this.vm.spec.accel, channel: this.vm.spec.channel ?? 'serial', restoreMs: Math.round(this.restoreMs), waitedMs: Math.round(this.waitedMs), ...(this.restoredAhead && { restoredAhead: true }), ...(stat && { qemuCpuMs: (stat.utime + stat.stime) * 10 }), console: { tail: this.vm.consoleTail(), ...(incident && { incident }) } }
  }

  override async dispose(): Promise<void> {
    await super.dispose()
    await this.vm.dispose()
  }
}

/** `scale` multiplies the deadlines of answers (default OOMLAB_TIMEOUT_SCALE): the fault tests shorten them. */
export async function openGuestOs(g: PreparedGuest, o: { log?: (line: string) => void; onConsole?: (line: string) => void; signal?: AbortSignal; scale?: number } = {}): Promise<GuestOs> {
  const t0 = performance.now()
  const timeoutMs = LAB_DEFAULTS.restoreTimeoutMs * timeoutScale()
  const hooks = { ...(o.onConsole && { onConsole: o.onConsole }), ...(o.signal && { signal: o.signal }) }
  const ahead = g.ahead ? await resumeAhead(g, g.ahead, { ...hooks, timeoutMs, ...(o.log && { log: o.log }) }) : undefined
  const { vm, snapshot } = ahead
    ? { vm: ahead.vm, snapshot: g.snapshot }
    : await restoreFromSnapshot(g.spec, {
        cacheDir: g.cacheDir,
        ids: g.ids,
        ready: agentReady,
        bootTimeoutMs: g.bootTimeoutMs,
        timeoutMs,
        ...hooks,
        ...(o.log && { log: o.log }),
      })
  if (snapshot.remadeBecause) o.log?.(`snapshot remade: ${snapshot.remadeBecause}`)
  // Each restore marks what it needs as used, so that a long run keeps it past the cache's idle hour.
  void markUsed(stampsOf(g.cacheDir, { kernelPath: g.spec.kernel, release: g.kernel.release, initrd: g.spec.initrd, snapshotKey: snapshot.key }))
  const os = new GuestOs(vm, g.kernel.release, o.scale)
  os.waitedMs = performance.now() - t0
  os.restoreMs = os.waitedMs + (ahead?.loadMs ?? 0)
  os.restoredAhead = ahead !== undefined
  return os
}

/**
 * A guest restored ahead, claimed, resumed and its agent answering; undefined when none is left (or it
 * fails: then the experiment restores its own, and the log says why).
 */
async function resumeAhead(g: PreparedGuest, socket: string, o: VmHooks & { timeoutMs: number; log?: (line: string) => void }): Promise<ClaimedAhead | undefined> {
  const t0 = performance.now()
  let claimed: ClaimedAhead | { none: string }
  try {
    claimed = await claimAhead(socket, g.snapshot.key, g.spec, o)
  } catch (err) {
    if (o.signal?.aborted) throw err
    o.log?.(`a guest restored ahead could not be resumed (${errorMessage(err)}); restoring one`)
    return undefined
  }
  if ('none' in claimed) return undefined
  try {
    await readyWithin(claimed.vm, 'restored', agentReady, o.timeoutMs - (performance.now() - t0), `the guest agent did not answer within ${o.timeoutMs / 1000} s of the resume`)
    return claimed
  } catch (err) {
    await claimed.vm.dispose()
    if (o.signal?.aborted) throw err
    o.log?.(`a guest restored ahead did not answer (${errorMessage(err)}); restoring one`)
    return undefined
  }
}
