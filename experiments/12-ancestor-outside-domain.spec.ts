/**
 * Beyond the article: the limit is on test011, memory.oom.group=1 only on its parent test01. The
 * OOM is inside test011, and "an OOM inside a cgroup never kills tasks outside it, whatever
 * ancestors' memory.oom.group say": no group kill, only the hog dies.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'

experiment('oom.group=1 on an ancestor outside the OOM domain: no group kill, only the hog dies', async ({ lab }) => {
  await lab.cgroup('test01', { 'memory.oom.group': 1 })
  const test011 = await lab.cgroup('test01/test011', { 'memory.max': '192M', 'memory.oom.group': 0 })

  const shell = await lab.shell(test011)
  const sleeps = [await lab.nohupSleep(test011), await lab.nohupSleep(test011)]
  await shell.runStressNg()
  await test011.waitForMemoryEvent('oom_kill', { atLeast: 1 })
  const oom = await lab.waitForOomEvent((e) => e.killed.length > 0, 'a "Killed process" record for test011')
  await lab.waitForKillRecords()

  const fates = await lab.fates()
  expect(lab.fateOf(fates, shell)).toHaveSurvived()
  for (const sleep of sleeps) expect(lab.fateOf(fates, sleep)).toHaveSurvived()
  expect(oom.oomMemcg).toBe(test011.kernelPath)
  expect(oom.victim?.comm).toMatch(/^stress-ng/)
  expect(lab.oomEvents().every((e) => e.groupKill === undefined)).toBe(true)
})
