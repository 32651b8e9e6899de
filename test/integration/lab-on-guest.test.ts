/**
 * The Lab's own guarantees, checked on a real kernel: guests restored from the lab snapshot (what
 * `npm test` prepares anyway). Each check fails on the code before its fix, tried by removing the fix:
 * the read-back check every time; the barrier and the settled judgement only where the race can happen,
 * hence their guest with two vCPUs and a slow console (without the fix: 1 of 3 and 3 of 4 runs failed).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readdirSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { prepareLabGuest } from '../../src/vm/prepare.js'
import { openGuestOs, type GuestOs, type PreparedGuest } from '../../src/vm/restore.js'
import { Lab, ROOT } from '../../src/experiment/lab.js'
import { labGuestSkipReason } from '../helpers/lab-guest.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'
import { KernelTimeoutError } from '../../src/util/errors.js'
import '../../src/experiment/matchers.js'

const T = timeoutScale()

const why = labGuestSkipReason()

describe.skipIf(why !== '')(`the Lab on a restored guest${why ? ` (skipped: ${why})` : ''}`, () => {
  let guest: PreparedGuest
  let os: GuestOs | undefined
  let lab: Lab | undefined

  /**
   * Two vCPUs, and every kernel record also printed on the serial console (loglevel=8): the OOM killer
   * prints a group kill record by record, each held up by the emulated console, while the agent reads the
   * log on the other vCPU. A judgement that does not wait can then see the victim's record alone.
   */
  let slow: PreparedGuest | undefined
  const slowConsole = async () => (slow ??= await prepareLabGuest({ kernel: 'bookworm', accel: 'auto', cpus: 2, append: ['loglevel=8'] }))

  beforeAll(async () => {
    guest = await prepareLabGuest({ kernel: 'bookworm', accel: 'auto' })
  }, 120_000 * T)

  afterEach(async () => {
    await lab?.dispose()
    await os?.dispose()
    lab = os = undefined
  })

  const open = async (name: string, g?: () => Promise<PreparedGuest>): Promise<Lab> => {
    os = await openGuestOs(g ? await g() : guest)
    lab = await Lab.open(name, { os })
    return lab
  }

  it('reads the kernel log up to the barrier: records written before it are in once it returns', { timeout: 60_000 * T }, async () => {
    const lab = await open('kernel-log barrier', slowConsole)
    const tag = `oomlab-barrier-check-${lab.tree.name}`
    const writer = await lab.cgroup('writer')
    // The writer says it is done on its stdout, a path of its own: that word can overtake the log's records.
    const s = await os!.spawn({ argv: ['/bin/sh', '-c', `for i in $(seq 1 1000); do echo "${tag} $i" > /dev/kmsg; done; echo written; exec sleep 60`], cgroup: writer.dir, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000 })
    await os!.waitOutput(s.id, 'written', 0, 'the writer to finish', 30_000 * T)
    await os!.kernelLogBarrier()
    expect(lab.log.records.filter((r) => r.message.startsWith(`${tag} `)).map((r) => r.message)).toEqual(Array.from({ length: 1000 }, (_, i) => `${tag} ${i + 1}`))
  })

  it('traces on the kernel log\'s clock: a record written between two trace markers is stamped between them', { timeout: 60_000 * T }, async () => {
    const lab = await open('trace clock')
    expect(await os!.tracePopulated(true)).toBe(true)
    const tag = `oomlab-clock-check-${lab.tree.name}`
    const writer = await lab.cgroup('writer')
    const markers = '/sys/kernel/tracing/trace_marker'
    const s = await os!.spawn({ argv: ['/bin/sh', '-c', `echo ${tag}-before > ${markers}; echo "<5>${tag}" > /dev/kmsg; echo ${tag}-after > ${markers}; echo written`], cgroup: writer.dir, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000 })
    await os!.waitOutput(s.id, 'written', 0, 'the writer to finish', 30_000 * T)
    await os!.kernelLogBarrier()
    const trace = await os!.readTrace()
    const at = (word: string) => Number(new RegExp(String.raw`\s(\d+\.\d{6}): tracing_mark_write: ${tag}-${word}$`, 'm').exec(trace)?.[1]) * 1e6
    const record = lab.log.records.find((r) => r.message === tag)
    expect(record, 'the record in the kernel log').toBeDefined()
    expect([at('before'), at('after')].every(Number.isFinite), trace).toBe(true)
    expect([at('before'), record!.usec, at('after')]).toEqual([...[at('before'), record!.usec, at('after')]].sort((a, b) => a - b))
    expect(at('after') - at('before')).toBeLessThan(20_000)
    await os!.tracePopulated(false)
  })

  it('judges who survived only after the group kill is in: fates() right after the first "Killed process" record', { timeout: 120_000 * T }, async () => {
    const lab = await open('fates after the barrier', slowConsole)
    await lab.cgroup('test01')
    const test011 = await lab.cgroup('test01/test011', { 'memory.max': '192M', 'memory.oom.group': 1 })
    const shell = await lab.shell(test011)
    const sleeps = [await lab.nohupSleep(test011), await lab.nohupSleep(test011)]
    await shell.runStressNg()
    await lab.waitForOomEvent((e) => e.killed.length > 0, 'a "Killed process" record for test011')

    // No wait of the spec's own between the first record and the judgement: fates() must settle itself.
    const fates = await lab.fates()
    for (const m of [shell.member, ...sleeps]) expect(lab.fateOf(fates, m)).toHaveBeenKilledByTheOomKiller()
  })

  it('restores two guests at once from one snapshot: neither sees the other\'s processes, files or kernel records, and this process keeps no descriptor of the state file', { timeout: 60_000 * T }, async () => {
    const [a, b] = await Promise.all([openGuestOs(guest), openGuestOs(guest)])
    // Each QEMU was handed the state file as its fd 3; this process closed its own copy at once.
    expect(descriptorsOn(guest.snapshot.path)).toEqual([])
    try {
      const [labA, labB] = await Promise.all([Lab.open('twin a', { os: a }), Lab.open('twin b', { os: b })])
      try {
        const [cgA, cgB] = await Promise.all([labA.cgroup('x'), labB.cgroup('x')])
        // Each guest starts from the same moment: the same PID for the same first spawn, in two machines.
        const start = (os: GuestOs, lab: Lab, cg: string, tag: string) =>
          os.spawn({ argv: ['/bin/sh', '-c', `echo "twin ${tag}" > /dev/kmsg; echo ${tag} > /tmp/twin; echo ready; exec sleep 600`], cgroup: cg, user: ROOT, cwd: lab.tree.cwd, stdin: 'ignore', timeoutMs: 10_000 })
        const [pa, pb] = await Promise.all([start(a, labA, cgA.dir, 'a'), start(b, labB, cgB.dir, 'b')])
        expect(pa.pid).toBe(pb.pid)
        await Promise.all([a.waitOutput(pa.id, 'ready', 0, 'a\'s shell', 10_000 * T), b.waitOutput(pb.id, 'ready', 0, 'b\'s shell', 10_000 * T)])
        await Promise.all([a.kernelLogBarrier(), b.kernelLogBarrier()])
        const [[fa], [fb]] = await Promise.all([a.run([{ op: 'read', path: '/tmp/twin' }]), b.run([{ op: 'read', path: '/tmp/twin' }])])
        expect([fa?.ok && fa.value, fb?.ok && fb.value]).toEqual(['a\n', 'b\n'])
        const twins = (lab: Lab) => lab.log.records.filter((r) => r.message.startsWith('twin ')).map((r) => r.message)
        expect([twins(labA), twins(labB)]).toEqual([['twin a'], ['twin b']])
        // Killing the process in one guest leaves the other's.
        await a.run([{ op: 'write', path: join(cgA.dir, 'cgroup.kill'), data: '1' }])
        await a.waitExit([{ pid: pa.pid, startTime: pa.startTime, label: 'a\'s sleep' }], 10_000 * T)
        const [[still]] = await Promise.all([b.run([{ op: 'proc', pid: pb.pid }])])
        expect(still?.ok && still.value).toBeTruthy()
      } finally {
        await Promise.all([labA.dispose(), labB.dispose()])
      }
    } finally {
      await Promise.all([a.dispose(), b.dispose()])
    }
  })

  it('fails within seconds of the allocation ending when the workload stays below its limit, naming the cgroup, its limit and its peak', { timeout: 90_000 * T }, async () => {
    const lab = await open('limit never reached')
    await lab.cgroup('test01')
    // The article's 256M stress-ng under a 400M limit: it allocates, then holds its memory (--vm-hang 0).
    const test011 = await lab.cgroup('test01/test011', { 'memory.max': '400M', 'memory.oom.group': 1 })
    const shell = await lab.shell(test011)
    await shell.runStressNg()
    const t0 = performance.now()
    const err = await lab.waitForGroupKill(test011).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    const ms = performance.now() - t0
    expect(err).toBeInstanceOf(Error)
    expect(err).not.toBeInstanceOf(KernelTimeoutError)
    expect(err!.message).toMatch(
      /^test01\/test011 never reached its limit: memory\.max 400\.0M, peak 2[5-9]\d\.\dM \(memory\.peak\), memory\.events max 0 oom 0: stress-ng-vm \d+ of `stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v` holds its memory asleep in \w*nanosleep \(--vm-hang\), so no OOM kill will come; was waiting for the kernel log: an OOM kill in test01\/test011$/,
    )
    // The allocation of 256M under emulation takes a few seconds; the kernel log's wait would take 60 s.
    expect(ms).toBeLessThan(20_000 * T)
    lab.note(`failed ${Math.round(ms)} ms after stress-ng's vm stressor started`)
    console.log(`limit never reached: failed ${Math.round(ms)} ms after stress-ng's vm stressor started: ${err!.message}`)
  })

  it('fails the setup when the kernel stores another value than the one written', { timeout: 30_000 * T }, async () => {
    const lab = await open('setup read-back')
    // memory.max is kept in pages: 100 bytes is stored as 0, which would make any allocation an OOM.
    await expect(lab.cgroup('tiny', { 'memory.max': '100' })).rejects.toThrow('setup: tiny/memory.max reads back "0" after writing "100": the kernel did not take the setting')
  })
})

/** This process's open descriptors that refer to `path`. */
function descriptorsOn(path: string): string[] {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path
    } catch {
      return false
    }
  })
}
