/**
 * A workload that stays below its limit: how the Lab knows the allocation ended without an OOM kill
 * (see Os.waitAllocationEnd), and what it says then: each limited cgroup, its limit, and the most it used.
 */
import { join } from 'node:path'
import { parseMemoryEvents } from '../cgroup/memory-events.js'
import { OpBatch } from '../os/batch.js'
import type { AllocationEnd, AllocationWatch, Os, ProcIdentity } from '../os/os.js'
import type { Cgroup } from './cgroup.js'

export type Asleep = Extract<AllocationEnd, { by: 'asleep' }>

/** What ends the allocation of the vm stressor's workers in the tree's cgroups (--vm-hang: they hold their memory in sleep(3)). */
export function allocationWatch(stressor: ProcIdentity, cgroups: readonly Cgroup[]): AllocationWatch {
  return {
    parent: { pid: stressor.pid, startTime: stressor.startTime },
    cgroups: cgroups.map((c) => c.dir),
    limits: cgroups.filter((c) => c.limited).map((c) => ({ path: join(c.dir, 'memory.events'), oomBefore: parseMemoryEvents(c.eventsTextAtStart ?? '').oom ?? 0 })),
  }
}

/** Bytes as MiB, as a limit is read ("419430400" -> "400.0M"; "max" stays). */
export function mib(bytes: string | undefined): string {
  if (bytes === undefined) return '?'
  return /^\d+$/.test(bytes) ? `${(Number(bytes) / 2 ** 20).toFixed(1)}M` : bytes
}

/**
 * Each limit of the tree and the most its cgroup used: memory.peak (5.19+), else memory.current (what
 * the sleeping workload holds now); with memory.events' "max" (times the limit was hit) and "oom".
 */
export async function limitsNotReached(os: Os, cgroups: readonly Cgroup[], o: { release: string; asleep: Asleep; command: string | undefined }): Promise<string> {
  const b = new OpBatch()
  const limited = cgroups
    .filter((c) => c.limited)
    .map((c) => ({
      c,
      max: b.read(join(c.dir, 'memory.max')),
      peak: b.read(join(c.dir, 'memory.peak')),
      current: b.read(join(c.dir, 'memory.current')),
      events: b.read(join(c.dir, 'memory.events')),
    }))
  await b.run(os)
  const said = limited.map(({ c, max, peak, current, events }) => {
    const p = peak.valueOrUndefined()?.trim()
    const used = p !== undefined ? `peak ${mib(p)} (memory.peak)` : `memory.current ${mib(current.valueOrUndefined()?.trim())} (kernel ${o.release} has no memory.peak: it came in 5.19)`
    const ev = parseMemoryEvents(events.valueOrUndefined() ?? '')
    return `${c.name} never reached its limit: memory.max ${mib(max.valueOrUndefined()?.trim())}, ${used}, memory.events max ${ev.max ?? '?'} oom ${ev.oom ?? '?'}`
  })
  const command = o.command ? ` of \`${o.command}\`` : ''
  return `${said.join('; ') || 'no cgroup of the tree has a memory.max'}: ${o.asleep.comm} ${o.asleep.pid}${command} holds its memory asleep in ${o.asleep.wchan} (--vm-hang), so no OOM kill will come`
}
