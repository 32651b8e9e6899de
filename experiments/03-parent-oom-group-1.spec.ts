/**
 * Article, the parent case: the 192M limit and memory.oom.group=1 on test01, with children
 * test011 (shell, sleep, stress-ng) and test012 (two sleeps). Every task in every descendant dies.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'

experiment('memory.oom.group=1 on a parent: every task in every descendant is killed', async ({ lab }) => {
  // $ mkdir -p test01/test011 test01/test012; echo 192M > test01/memory.max; echo 1 > test01/memory.oom.group
  const test01 = await lab.cgroup('test01', { 'memory.max': '192M', 'memory.oom.group': 1 })
  const test011 = await lab.cgroup('test01/test011')
  const test012 = await lab.cgroup('test01/test012')

  // test011: the shell and a `nohup sleep 7200` started beside it; test012: two more.
  const shell = await lab.shell(test011)
  await lab.nohupSleep(test011)
  await lab.nohupSleep(test012)
  await lab.nohupSleep(test012)

  // $ stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v   (in test011)
  await shell.runStressNg()
  const oom = await lab.waitForGroupKill(test01)
  await test01.waitUntilEmpty()
  await lab.waitForKillRecords()

  // Nobody survived, in either child.
  const fates = await lab.fates()
  expect(fates.filter((f) => f.member.cgroup === 'test01/test012')).toHaveLength(2)
  for (const f of fates) expect(f).toHaveBeenKilledByTheOomKiller()

  // The limit was hit on test01, the victim was in test011, and the group killed was test01.
  expect(oom.oomMemcg).toBe(test01.kernelPath)
  expect(oom.taskMemcg).toBe(test011.kernelPath)
  expect(oom.groupKill).toBe(test01.kernelPath)
  const events = await test01.memoryEvents()
  if (lab.has('oom_group_kill')) expect(events.oom_group_kill).toBe(1)
})
