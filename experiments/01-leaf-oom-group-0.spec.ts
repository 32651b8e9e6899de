/**
 * Article, "0 の場合": memory.oom.group=0 on the leaf test011 (limit 192M). The OOM killer picks
 * one process by its score, the stress-ng worker; the shell and the sleeps stay.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'

experiment('memory.oom.group=0 on a leaf: only the memory hog is killed', async ({ lab }) => {
  // $ mkdir -p /sys/fs/cgroup/test01/test011; echo 192M > test011/memory.max
  await lab.cgroup('test01')
  const test011 = await lab.cgroup('test01/test011', { 'memory.max': '192M', 'memory.oom.group': 0 })
  expect(test011.settings['memory.oom.group']).toBe('0')

  // $ echo $$ > test011/cgroup.procs; nohup sleep 7200 & (twice)
  const shell = await lab.shell(test011)
  const sleeps = [await lab.nohupSleep(test011), await lab.nohupSleep(test011)]

  // $ stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v
  await shell.runStressNg()
  const events = await test011.waitForMemoryEvent('oom_kill', (n) => n >= 1, 'oom_kill >= 1')
  const oom = await lab.waitForOomEvent((e) => e.killed.length > 0, 'a "Killed process" record for test011')
  await lab.waitForKillRecords()

  // Who survived?
  const fates = await lab.fates()
  expect(lab.fateOf(fates, shell)).toHaveSurvived()
  for (const sleep of sleeps) expect(lab.fateOf(fates, sleep)).toHaveSurvived()
  expect(await test011.procs()).toEqual(expect.arrayContaining([shell.pid, ...sleeps.map((s) => s.pid)]))

  // The victim is a stress-ng worker, picked alone: no group kill.
  expect(oom.taskMemcg).toBe(test011.kernelPath)
  expect(oom.victim?.comm).toMatch(/^stress-ng/)
  expect(oom.groupKill).toBeUndefined()
  expect(lab.oomEvents().every((e) => e.groupKill === undefined)).toBe(true)
  expect(events.oom_kill).toBeGreaterThanOrEqual(1)
  if ('oom_group_kill' in events) expect(events.oom_group_kill).toBe(0)
})
