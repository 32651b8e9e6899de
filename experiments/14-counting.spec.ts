/**
 * Beyond the article: counting. For a group kill, oom_kill of the cgroup whose limit was hit moves
 * by the number of "Killed process" records of that event (the victim is counted twice: once as
 * the victim, once as a member), and oom_group_kill moves by exactly one where the kernel has it
 * (5.17+). The kernel selftest test_memcg_oom_group_score_events checks the same arithmetic. Where
 * the kills are counted depends on the kernel's version (memory.events counts up the tree from 5.2).
 */
import { experiment, expect } from '../src/experiment/fixtures.js'
import { delta } from '../src/cgroup/memory-events.js'
import { eventsCountLocally } from '../src/kernel/capabilities.js'

experiment('memory.events counts every kill of a group kill, the victim twice, and one group kill', async ({ lab }) => {
  const test01 = await lab.cgroup('test01', { 'memory.max': '192M', 'memory.oom.group': 1 })
  const test011 = await lab.cgroup('test01/test011')
  const test012 = await lab.cgroup('test01/test012')
  const shell = await lab.shell(test011)
  await lab.nohupSleep(test011)
  await lab.nohupSleep(test012)

  const tree = [test01, test011, test012]
  const before = await Promise.all(tree.map((c) => c.memoryEvents()))
  await shell.runStressNg()
  await lab.waitForGroupKill(test01)
  await test01.waitUntilEmpty()
  await lab.waitForKillRecords()
  const after = await Promise.all(tree.map((c) => c.memoryEvents()))
  // Read once every record is in: the event as first seen may lack its last members.
  const events = lab.oomEvents()
  expect(events).toHaveLength(1)
  const oom = events[0]!
  const victimRecords = oom.killed.filter((k) => k.pid === oom.victim?.pid)
  expect(victimRecords).toHaveLength(2)
  // Before 5.2, or mounted with memory_localevents, memory.events counts a cgroup's own events only: each
  // kill is then counted where its task was, and the tree's counts add up to the same (the kernel's
  // selftest reads it so). From 5.2 on, without the option, test01 counts its children's kills too.
  const local = eventsCountLocally(lab.facts.release, lab.facts.cgroup2?.options)
  const moved = (i: number) => delta(before[i]!, after[i]!, 'oom_kill') ?? NaN
  const oomKills = local ? moved(0) + moved(1) + moved(2) : moved(0)
  expect(oomKills).toBe(oom.killed.length)
  if (local) expect(moved(0)).toBe(0)
  if (lab.has('oom_group_kill')) expect(delta(before[0]!, after[0]!, 'oom_group_kill')).toBe(1)
  lab.note(`oom_kill moved by ${oomKills}${local ? ` over test01, test011 and test012 (each kill counted in its task's cgroup alone: ${[0, 1, 2].map(moved).join(' + ')})` : ' in test01'} for ${oom.killed.length} "Killed process" records (${new Set(oom.killed.map((k) => k.pid)).size} processes)`)
})
