/**
 * A restored guest that fails while a call waits on it (the waits of a spec: a process's exit): each
 * fault is reported for what it is, within its deadline, nothing of the guest is left, and the next
 * restore from the same snapshot is a pristine guest that answers.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { prepareLabGuest } from '../../src/vm/prepare.js'
import { GuestsAhead } from '../../src/vm/ahead.js'
import { openGuestOs, type GuestOs, type PreparedGuest } from '../../src/vm/restore.js'
import { Lab, ROOT } from '../../src/experiment/lab.js'
import { labGuestSkipReason } from '../helpers/lab-guest.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'

const T = timeoutScale()

const why = labGuestSkipReason()

describe.skipIf(why !== '')(`faults of a restored guest${why ? ` (skipped: ${why})` : ''}`, () => {
  let guest: PreparedGuest
  let os: GuestOs | undefined
  let lab: Lab | undefined

  beforeAll(async () => {
    guest = await prepareLabGuest({ kernel: 'bookworm', accel: 'auto' })
  }, 120_000 * T)

  afterEach(async () => {
    await lab?.dispose().catch(() => undefined)
    await os?.dispose()
    // Nothing of the faulted guest is left.
    if (os?.vm.pid !== undefined) expect(existsSync(`/proc/${os.vm.pid}`)).toBe(false)
    lab = os = undefined
    // The next experiment gets a pristine guest from the same snapshot.
    const next = await openGuestOs(guest)
    try {
      const facts = await next.facts()
      expect(facts.release).toBe(guest.kernel.release)
      const [procs] = await next.run([{ op: 'read', path: '/proc/loadavg' }])
      expect(procs?.ok).toBe(true)
    } finally {
      await next.dispose()
    }
  }, 60_000 * T)

  /** A guest with a sleep whose exit a call waits on (60 s), and `fault` done to it; what the wait fails with, and when. */
  async function faultWhileWaiting(fault: (os: GuestOs, lab: Lab, cgroup: string) => Promise<void>, g = guest): Promise<{ message: string; ms: number }> {
    // Answers' deadlines a fifth of the default: the heartbeat reports a stuck agent after 3 s, not 15.
    os = await openGuestOs(g, { scale: 0.2 * T })
    lab = await Lab.open('fault', { os })
    const cg = await lab.cgroup('x')
    const sleep = await os.spawn({ argv: ['sleep', '600'], cgroup: cg.dir, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000 })
    const waiting = os.waitExit([{ pid: sleep.pid, startTime: sleep.startTime, label: 'sleep' }], 60_000)
    waiting.catch(() => undefined)
    const t0 = performance.now()
    await fault(os, lab, cg.dir)
    const err = await waiting.then(
      () => new Error('the wait ended without an error'),
      (e: unknown) => e as Error,
    )
    return { message: err.message, ms: performance.now() - t0 }
  }

  /** Runs a root shell command in the guest, without waiting for it (it may take the agent down). */
  const inGuest = (script: string) => async (os: GuestOs, lab: Lab, cgroup: string) => {
    // The spawn's own answer may never come: the fault can take the agent down first.
    void os.spawn({ argv: ['/bin/sh', '-c', script], cgroup, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000 }).catch(() => undefined)
  }

  it('the guest kernel panics: "the guest kernel panicked", at once', { timeout: 60_000 * T }, async () => {
    const r = await faultWhileWaiting(inGuest('echo c > /proc/sysrq-trigger'))
    expect(r.message).toMatch(/the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash/)
    expect(r.ms).toBeLessThan(5_000 * T)
  })

  it('a guest restored ahead (held by another process) panics: the same, at once, its console come over the claim socket', { timeout: 60_000 * T }, async () => {
    await using ahead = await GuestsAhead.start(guest.spec, guest.snapshot, 1, { timeoutMs: 30_000 * T })
    const r = await faultWhileWaiting(inGuest('echo c > /proc/sysrq-trigger'), { ...guest, ahead: ahead.socketPath })
    expect(os!.restoredAhead).toBe(true)
    expect(r.message).toMatch(/the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash/)
    expect(r.ms).toBeLessThan(5_000 * T)
  })

  it('the agent dies: its exit status from the console, at once', { timeout: 60_000 * T }, async () => {
    const r = await faultWhileWaiting(inGuest('kill -9 $(pidof node)'))
    expect(r.message).toMatch(/the guest agent exited with status 137/)
    expect(r.ms).toBeLessThan(5_000 * T)
  })

  it('the agent stops answering: "stuck, or the guest hangs", within the heartbeat, not at the wait\'s end', { timeout: 60_000 * T }, async () => {
    const r = await faultWhileWaiting(inGuest('kill -STOP $(pidof node)'))
    expect(r.message).toMatch(/the agent left a ping unanswered for \d+ s: it is stuck, or the guest hangs/)
    expect(r.ms).toBeLessThan(12_000 * T)
  })

  it('the whole guest hangs (its vCPU stopped): the same, within the heartbeat', { timeout: 60_000 * T }, async () => {
    const r = await faultWhileWaiting(async (os) => void (await os.vm.qmp.execute('stop')))
    expect(r.message).toMatch(/the agent left a ping unanswered for \d+ s: it is stuck, or the guest hangs/)
    expect(r.ms).toBeLessThan(12_000 * T)
  })

  it('the channel is cut mid-answer: the unfinished frame is named', { timeout: 120_000 * T }, async () => {
    // On the UART, where a shell can write half a frame beside the agent: a virtio port opens once only,
    // and the host reads both channels alike (a socket of QEMU's).
    const serial = await prepareLabGuest({ kernel: 'bookworm', accel: 'auto', channel: 'serial' })
    // The agent is stopped first: were it stopped after, its answer to this shell's spawn could follow the fragment.
    const r = await faultWhileWaiting(inGuest(`kill -STOP $(pidof node); printf '{"t":"s","i":"x' > /dev/ttyS1`), serial)
    expect(r.message).toMatch(/the channel holds 15 bytes of a frame that never ended \("\{\\"t\\":\\"s\\",\\"i\\":\\"x"\)/)
    expect(r.ms).toBeLessThan(12_000 * T)
  })

  it('the workload leaves a process the teardown cannot kill: named, with what it is, at the teardown\'s deadline', { timeout: 90_000 * T }, async () => {
    os = await openGuestOs(guest)
    lab = await Lab.open('fault', { os })
    const cg = await lab.cgroup('x')
    // cgroup v2 lets root move an unbound kernel thread into a cgroup, and no signal ends one: cgroup.kill skips it.
    const s = await os.spawn({
      argv: ['/bin/sh', '-c', `for d in /proc/[0-9]*; do [ "$(cat $d/comm)" = oom_reaper ] && echo \${d#/proc/} > ${cg.dir}/cgroup.procs && echo "moved \${d#/proc/}"; done; true`],
      cgroup: cg.dir, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000,
    })
    const [, pid] = await os.waitOutput(s.id, String.raw`moved (\d+)`, 0, 'the kernel thread moved in', 10_000 * T)
    await os.waitExit([{ pid: s.pid, startTime: s.startTime, label: 'the shell' }], 10_000 * T)
    const t0 = performance.now()
    const err = await os.closeTree(lab.tree).then(() => new Error('the teardown ended without an error'), (e: unknown) => e as Error)
    const ms = performance.now() - t0
    expect(err.message).toMatch(new RegExp(`still holds a process that SIGKILL did not end within 20 s: pid ${pid} \\(oom_reaper\\): a kernel thread, which no signal ends`))
    // 20 s of waiting for "populated 0", then 3 s of the last-resort synchronous kill.
    expect(ms).toBeGreaterThan(19_000)
    expect(ms).toBeLessThan(30_000 * T)
  })
})
