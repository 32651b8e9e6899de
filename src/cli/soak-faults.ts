/**
 * The soak's faults of a restored guest, the path every run takes: while a call waits on the guest (a
 * process's exit, as a spec's waits do), the guest kernel panics, the guest hangs, the guest runs out of
 * memory itself, or the channel is cut mid-frame. Each must be reported for what it is, within the
 * heartbeat's few seconds rather than at the wait's end, with nothing of the guest left behind.
 */
import { existsSync } from 'node:fs'
import { prepareLabGuest } from '../vm/prepare.js'
import { openGuestOs, type GuestOs, type PreparedGuest } from '../vm/restore.js'
import { Lab, ROOT } from '../experiment/lab.js'
import { timeoutScale } from '../util/timeout-scale.js'

export interface GuestFault {
  name: string
  /** The waiting call's error must match this. */
  expected: RegExp
  /** Done to the guest while the call waits. */
  fault: (os: GuestOs, lab: Lab, cgroup: string) => Promise<void>
  /** The UART, where a shell can write half a frame beside the agent (a virtio port opens once only). */
  serial?: boolean
}

/** A root shell command in the guest, not waited for: the fault may take the agent down before it answers. */
const inGuest = (script: string) => async (os: GuestOs, lab: Lab, cgroup: string) => {
  void os.spawn({ argv: ['/bin/sh', '-c', script], cgroup, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000 }).catch(() => undefined)
}

export const GUEST_FAULTS: GuestFault[] = [
  { name: 'a guest kernel that panics', expected: /the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash/, fault: inGuest('echo c > /proc/sysrq-trigger') },
  { name: 'a guest that hangs (its vCPU stopped)', expected: /the agent left a ping unanswered for \d+ s: it is stuck, or the guest hangs/, fault: async (os) => void (await os.vm.qmp.execute('stop')) },
  {
    name: 'a guest that runs out of memory itself',
    expected: /the guest ran out of memory itself: its kernel killed node/,
    // The agent made the first victim, then a hog with no limit fills the guest's memory.
    fault: inGuest(`echo 1000 > /proc/$(pidof node)/oom_score_adj; exec node -e 'const a = []; for (;;) a.push(Buffer.alloc(32 << 20, 1))'`),
  },
  {
    name: 'a channel cut off mid-frame',
    expected: /the channel holds 15 bytes of a frame that never ended/,
    // The agent stopped first: were it stopped after, its answer to this shell's spawn could follow the fragment.
    fault: inGuest(`kill -STOP $(pidof node); printf '{"t":"s","i":"x' > /dev/ttyS1`),
    serial: true,
  },
]

/** How long a fault may take to be reported: the heartbeat's deadline at a fifth of the default, and slack. */
const REPORTED_WITHIN_MS = 15_000

/**
 * Does `f` to a guest restored for it while a call waits on a sleep's exit (60 s); undefined when the
 * wait failed as expected, in time, and the guest's QEMU is gone after; else what went wrong.
 */
export async function checkGuestFault(f: GuestFault, kernel: string | undefined, signal: AbortSignal): Promise<string | undefined> {
  const scale = timeoutScale()
  const guest: PreparedGuest = await prepareLabGuest({ ...(kernel !== undefined && { kernel }), accel: 'auto', ...(f.serial && { channel: 'serial' as const }) }, { signal })
  // Answers' deadlines a fifth of the default: the heartbeat reports a stuck agent after 3 s, not 15.
  const os = await openGuestOs(guest, { signal, scale: 0.2 * scale })
  let lab: Lab | undefined
  try {
    lab = await Lab.open('soak: a guest fault', { os })
    const cg = await lab.cgroup('x')
    const sleep = await os.spawn({ argv: ['sleep', '600'], cgroup: cg.dir, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000 })
    const waiting = os.waitExit([{ pid: sleep.pid, startTime: sleep.startTime, label: 'sleep' }], 60_000)
    waiting.catch(() => undefined)
    const t0 = performance.now()
    await f.fault(os, lab, cg.dir)
    const message = await waiting.then(
      () => 'the wait ended without an error',
      (e: unknown) => (e as Error).message,
    )
    const ms = performance.now() - t0
    if (!f.expected.test(message)) return `expected ${f.expected}, got: ${message}`
    if (ms > REPORTED_WITHIN_MS * scale) return `reported after ${(ms / 1000).toFixed(1)} s, not within ${(REPORTED_WITHIN_MS * scale) / 1000} s: ${message}`
    return undefined
  } finally {
    await lab?.dispose().catch(() => undefined)
    await os.dispose()
    if (os.vm.pid !== undefined && existsSync(`/proc/${os.vm.pid}`)) throw new Error(`the faulted guest's QEMU (${os.vm.pid}) is still running after its disposal`)
  }
}
