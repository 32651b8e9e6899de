/**
 * The end of a workload's allocation, seen on the machine: the OOM killer ran in one of its limits
 * (memory.events' "oom" count moved: the kernel signals it through inotify), or an allocating child
 * sleeps where it holds its memory, or the allocator is gone. /proc raises no event when a process
 * goes to sleep, so the children's states are read on every memory.events change and every POLL_MS.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import { parseKeyed, parsePids } from '../cgroup/cgroupfs.js'
import { liveness, nanosleepOf, readStat } from '../proc/procfs.js'
import { KernelTimeoutError } from '../util/errors.js'
import type { AllocationEnd, AllocationWatch } from './os.js'

const POLL_MS = 50

function oomMoved(w: AllocationWatch): boolean {
  return w.limits.some((l) => (parseKeyed(readFileSync(l.path, 'utf8')).get('oom') ?? 0) > l.oomBefore)
}

/** A child of the allocator, in the tree, asleep in nanosleep. */
function childAsleep(w: AllocationWatch): AllocationEnd | undefined {
  for (const dir of w.cgroups)
    for (const pid of parsePids(readFileSync(join(dir, 'cgroup.procs'), 'utf8'))) {
      const st = readStat(pid)
      if (st?.ppid !== w.parent.pid || st.state !== 'S') continue
      const where = nanosleepOf(pid)
      if (where !== undefined) return { by: 'asleep', pid, comm: st.comm, wchan: where }
    }
  return undefined
}

export function waitAllocationEnd(w: AllocationWatch, timeoutMs: number): Promise<AllocationEnd> {
  return new Promise<AllocationEnd>((resolve, reject) => {
    const watchers: FSWatcher[] = []
    let settled = false
    const finish = (fn: () => void) => {
      if (settled) return
      settled = true
      clearInterval(poll)
      clearTimeout(timer)
      for (const x of watchers) x.close()
      fn()
    }
    const check = () => {
      if (settled) return
      try {
        const end: AllocationEnd | undefined = oomMoved(w) ? { by: 'oom' } : liveness(w.parent) !== 'alive' ? { by: 'parent gone' } : childAsleep(w)
        if (end) finish(() => resolve(end))
      } catch (err) {
        finish(() => reject(err))
      }
    }
    const poll = setInterval(check, POLL_MS)
    const timer = setTimeout(
      () => finish(() => reject(new KernelTimeoutError(`the allocation of ${w.parent.pid}'s children to end (an OOM kill, or a child asleep in nanosleep)`, 'neither', timeoutMs))),
      timeoutMs,
    )
    try {
      for (const l of w.limits) watchers.push(watch(l.path, { persistent: false }, check).on('error', (err) => finish(() => reject(err))))
    } catch (err) {
      finish(() => reject(err))
      return
    }
    check()
  })
}
