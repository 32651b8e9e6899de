/**
 * The end of a workload's allocation as the machine sees it (src/os/allocation.ts), on this host's
 * cgroup2 hierarchy (no memory controller is needed: only cgroup.procs and /proc are read). A shell stands
 * for stress-ng's vm stressor: its child asleep in nanosleep ends the wait, and so does the shell's death.
 */
import { describe, it, expect } from 'vitest'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { startChild, type Child } from '../helpers/child.js'
import { cgMountPoint, cgCreate } from '../../src/cgroup/cgroupfs.js'
import { killAndRemoveSync } from '../../src/os/kill.js'
import { waitAllocationEnd } from '../../src/os/allocation.js'
import { readStat, readSyscall, nanosleepOf } from '../../src/proc/procfs.js'
import { KernelTimeoutError } from '../../src/util/errors.js'

const mount = cgMountPoint()
const why = !mount ? 'no cgroup2 mount on this host' : process.getuid?.() !== 0 ? 'needs root to create cgroups' : ''

/** A shell in `cg` that starts `child` (its own child) and says so. */
async function parentIn(cg: string, child: string): Promise<{ sh: Child; startTime: number }> {
  const sh = startChild('/bin/sh', ['-c', `echo $$ > ${join(cg, 'cgroup.procs')}; ${child} & echo started; wait`])
  await sh.line(/^started$/)
  return { sh, startTime: readStat(sh.pid)!.startTime }
}

describe.skipIf(why !== '')(`the end of an allocation${why ? ` (skipped: ${why})` : ''}`, () => {
  it('ends when a child of the allocator sleeps in nanosleep, naming it; and when the allocator is gone', async () => {
    const cg = join(mount!, `oomlab-unit-alloc-${process.pid}-${randomBytes(3).toString('hex')}`)
    await cgCreate(cg)
    try {
      const { sh, startTime } = await parentIn(cg, 'sleep 60')
      const watch = { parent: { pid: sh.pid, startTime }, cgroups: [cg], limits: [] }
      const end = await waitAllocationEnd(watch, 5_000)
      expect(end).toMatchObject({ by: 'asleep', comm: 'sleep', wchan: expect.stringMatching(/nanosleep/) })
      const sleeper = (end as { pid: number }).pid
      expect(readStat(sleeper)?.ppid).toBe(sh.pid)
      // What the kernel says where it gives no wchan (Debian's 5.10): the system call the sleep is in.
      expect(['nanosleep', 'clock_nanosleep']).toContain(({ 35: 'nanosleep', 230: 'clock_nanosleep', 101: 'nanosleep', 115: 'clock_nanosleep' } as Record<number, string>)[readSyscall(sleeper) ?? -1])
      expect(nanosleepOf(sh.pid)).toBeUndefined()

      sh.kill('SIGKILL')
      await sh.exit
      expect(await waitAllocationEnd(watch, 5_000)).toEqual({ by: 'parent gone' })
    } finally {
      killAndRemoveSync(cg)
    }
  })

  it('does not end while the children run, and ends as soon as a limit\'s "oom" count moves', async () => {
    const cg = join(mount!, `oomlab-unit-alloc-${process.pid}-${randomBytes(3).toString('hex')}`)
    await cgCreate(cg)
    // This host's cgroup2 has no memory controller: a keyed file of ours, written as the kernel writes memory.events, stands for it.
    const dir = mkdtempSync(join(tmpdir(), 'oomlab-unit-alloc-'))
    const events = join(dir, 'memory.events')
    writeFileSync(events, 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n')
    try {
      // A busy child never sleeps in nanosleep: the wait runs out its deadline.
      const { sh, startTime } = await parentIn(cg, 'while :; do :; done')
      const watch = { parent: { pid: sh.pid, startTime }, cgroups: [cg], limits: [{ path: events, oomBefore: 0 }] }
      await expect(waitAllocationEnd(watch, 500)).rejects.toBeInstanceOf(KernelTimeoutError)
      const t0 = performance.now()
      const ended = waitAllocationEnd(watch, 5_000)
      writeFileSync(events, 'low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n')
      expect(await ended).toEqual({ by: 'oom' })
      expect(performance.now() - t0).toBeLessThan(1_000)
    } finally {
      killAndRemoveSync(cg)
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
