/**
 * The two judgements the runtime specs (20-24) make of a container, from the Lab's fates and the
 * kernel's records: killed whole by a group kill, or only its allocating worker killed.
 */
import { expect } from '../src/experiment/fixtures.js'
import type { Lab, Fate, Cgroup } from '../src/experiment/lab.js'
import type { Container } from '../src/experiment/runtime.js'
import type { OomEvent } from '../src/kmsg/oom.js'

/**
 * The kernel group-killed the container: every process of it is dead, its PID 1 by the OOM killer's own
 * hand, the others by it or with their PID namespace, whose init it took first. `emptied` is the cgroup
 * whose "populated 0" says all are gone (LXC removes a container's own cgroup as its init ends).
 */
export async function expectKilledWhole(lab: Lab, c: Container, emptied: Cgroup = c.cgroup): Promise<{ oom: OomEvent; status: number; fates: Fate[] }> {
  const oom = await lab.waitForGroupKill(c.cgroup)
  await emptied.waitUntilEmpty()
  const status = await c.waitStopped()
  await lab.waitForKillRecords()
  const fates = await lab.fates()
  const inside = fates.filter((f) => f.member.cgroup === c.cgroup.name)
  expect(inside.length).toBeGreaterThanOrEqual(5)
  for (const f of inside) expect(f).toHaveDied()
  expect(lab.fateOf(fates, c.init)).toHaveBeenKilledByTheOomKiller()
  return { oom, status, fates }
}

/**
 * Only the container's allocating worker was killed, once or more (stress-ng starts it again), each time
 * alone and for the container's own limit; PID 1, the idle workers and stress-ng itself live.
 */
export async function expectOnlyTheWorkerKilled(lab: Lab, c: Container): Promise<Fate[]> {
  await c.cgroup.waitForMemoryEvent('oom_kill', { atLeast: 1 })
  await lab.waitForOomEvent((e) => e.killed.length > 0, `a "Killed process" record for ${c.cgroup.name}`)
  await lab.waitForKillRecords()
  // The kills so far, read before judging: stress-ng restarts its worker, which pushes again.
  const events = lab.oomEvents().filter((e) => e.killed.length > 0)
  const fates = await lab.fates()
  for (const m of c.members.filter((x) => x.role !== 'stress-ng vm worker')) expect(lab.fateOf(fates, m)).toHaveSurvived()
  expect(events.length).toBeGreaterThanOrEqual(1)
  for (const e of events) {
    expect(e.oomMemcg, `the cgroup whose limit was hit: ${e.oomMemcg}`).toBe(c.cgroup.kernelPath)
    expect(e.groupKill).toBeUndefined()
    expect(e.killed).toHaveLength(1)
    expect(lab.fateOf(fates, { pid: e.killed[0]!.pid }).member.role).toBe('stress-ng vm worker')
  }
  return fates
}
