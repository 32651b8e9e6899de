/**
 * Beyond the article: a task with oom_score_adj -1000 is never killed, not even by a group kill
 * (Documentation/admin-guide/cgroup-v2.rst, memory.oom.group). The group is test01 (limit 192M,
 * oom.group=1); test011 holds the shell and stress-ng, test012 a protected sleep and a plain one.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'

experiment('oom_score_adj -1000: a protected task survives the group kill, every other member dies', async ({ lab }) => {
  const test01 = await lab.cgroup('test01', { 'memory.max': '192M', 'memory.oom.group': 1 })
  const test011 = await lab.cgroup('test01/test011')
  const test012 = await lab.cgroup('test01/test012')

  const shell = await lab.shell(test011)
  const protectedSleep = await lab.nohupSleep(test012)
  const plainSleep = await lab.nohupSleep(test012)
  // # echo -1000 > /proc/$PID/oom_score_adj
  await lab.protect(protectedSleep)
  expect(protectedSleep.oomScoreAdj).toBe(-1000)

  await shell.runStressNg()
  const oom = await lab.waitForGroupKill(test01)
  await test011.waitUntilEmpty()
  await lab.waitForExit([plainSleep])
  await lab.waitForKillRecords()

  const fates = await lab.fates()
  expect(lab.fateOf(fates, protectedSleep)).toHaveSurvived()
  for (const f of fates.filter((f) => f.member !== protectedSleep)) expect(f).toHaveBeenKilledByTheOomKiller()
  expect(oom.groupKill).toBe(test01.kernelPath)
  // The group is not emptied: the protected task is still in it.
  expect(await test012.procs()).toEqual([protectedSleep.pid])
})
