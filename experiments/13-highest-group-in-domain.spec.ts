/**
 * Beyond the article: the limit is on test01, memory.oom.group=1 only on test011. The kernel kills
 * the highest cgroup with oom.group=1 between the victim's cgroup and the one whose limit was hit:
 * that is test011, so everything in test011 dies and everything in test012 survives.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'

experiment('oom.group=1 on the victim\'s leaf under a limited parent: the leaf dies, its sibling lives', async ({ lab }) => {
  const test01 = await lab.cgroup('test01', { 'memory.max': '192M', 'memory.oom.group': 0 })
  const test011 = await lab.cgroup('test01/test011', { 'memory.oom.group': 1 })
  const test012 = await lab.cgroup('test01/test012', { 'memory.oom.group': 0 })

  const shell = await lab.shell(test011)
  await lab.nohupSleep(test011)
  const siblings = [await lab.nohupSleep(test012), await lab.nohupSleep(test012)]
  await shell.runStressNg()
  const oom = await lab.waitForGroupKill(test011)
  await test011.waitUntilEmpty()
  await lab.waitForKillRecords()

  const fates = await lab.fates()
  // The shell, its sleep, stress-ng, its vm stressor and worker: everything of test011.
  const inTest011 = fates.filter((f) => f.member.cgroup === 'test01/test011')
  expect(inTest011.length).toBeGreaterThanOrEqual(5)
  for (const f of inTest011) expect(f).toHaveBeenKilledByTheOomKiller()
  for (const s of siblings) expect(lab.fateOf(fates, s)).toHaveSurvived()
  expect(oom.oomMemcg).toBe(test01.kernelPath)
  expect(oom.groupKill).toBe(test011.kernelPath)
  expect(await test012.procs()).toEqual(expect.arrayContaining(siblings.map((s) => s.pid)))
})
