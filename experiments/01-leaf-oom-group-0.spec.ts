/**
 * Article, "0 の場合": memory.oom.group=0 on the leaf test011 (limit 192M). The OOM killer picks
 * one process by its score, the stress-ng worker; the shell and the sleeps stay.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'

experiment('memory.oom.group=0 on a leaf: only the memory hog is killed', async ({ lab }) => {
  // $ mkdir -p /sys/fs/cgroup/test01/test011; echo 192M > test011/memory.max
  await lab.cgroup('test01')
  const test011 = await lab.cgroup('test01/test011', { 'memory.max': '192M', 'memory.oom.group': 0 })

  // $ echo $$ > test011/cgroup.procs   (the shell), and two `nohup sleep 7200` started beside it
  const shell = await lab.shell(test011)
  const sleeps = [await lab.nohupSleep(test011), await lab.nohupSleep(test011)]

  // $ stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v
  await shell.runStressNg()
  await test011.waitForMemoryEvent('oom_kill', { atLeast: 1 })
  await lab.waitForOomEvent((e) => e.killed.length > 0, 'a "Killed process" record for test011')
  await lab.waitForKillRecords()

  // The OOM kills so far, read before judging: stress-ng restarts its worker, which pushes again, and a
  // kill that comes after the judgement has no fate in it.
  const events = lab.oomEvents().filter((e) => e.killed.length > 0)

  // Who survived? The shell and the sleeps, still in test011.
  const fates = await lab.fates()
  expect(lab.fateOf(fates, shell)).toHaveSurvived()
  for (const sleep of sleeps) expect(lab.fateOf(fates, sleep)).toHaveSurvived()

  // Every one of those OOM kills took exactly one process, a stress-ng worker, for test011's own limit (an
  // OOM the kernel was still printing, with no "Killed process" yet, is not judged).
  expect(events.length).toBeGreaterThanOrEqual(1)
  for (const e of events) {
    expect(e.oomMemcg).toBe(test011.kernelPath)
    expect(e.groupKill).toBeUndefined()
    expect(e.killed).toHaveLength(1)
    expect(lab.fateOf(fates, { pid: e.killed[0]!.pid }).member.role).toBe('stress-ng vm worker')
  }
  const after = await test011.memoryEvents()
  if (lab.has('oom_group_kill')) expect(after.oom_group_kill).toBe(0)
})
