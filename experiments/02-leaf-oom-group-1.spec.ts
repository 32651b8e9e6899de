/**
 * Article, "1 の場合": memory.oom.group=1 on the leaf test011. The whole cgroup is one workload:
 * the shell, the nohup'ed sleeps and stress-ng all die together.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'

experiment('memory.oom.group=1 on a leaf: every task in it is killed, the shell too', async ({ lab }) => {
  // $ mkdir -p test01/test011; echo 192M > test011/memory.max; echo 1 > test011/memory.oom.group
  await lab.cgroup('test01')
  const test011 = await lab.cgroup('test01/test011', { 'memory.max': '192M', 'memory.oom.group': 1 })

  // $ echo $$ > test011/cgroup.procs   (the shell), and two `nohup sleep 7200` started beside it
  const shell = await lab.shell(test011)
  const sleeps = [await lab.nohupSleep(test011), await lab.nohupSleep(test011)]

  // $ stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v   (the shell is killed with it)
  await shell.runStressNg()
  const oom = await lab.waitForGroupKill(test011)
  await test011.waitUntilEmpty()
  await lab.waitForKillRecords()

  // Nobody survived, and the kernel names each one it killed.
  const fates = await lab.fates()
  expect(fates.map((f) => f.member.role)).toEqual(expect.arrayContaining(['shell', 'nohup sleep', 'stress-ng', 'stress-ng vm stressor', 'stress-ng vm worker']))
  for (const f of fates) expect(f).toHaveBeenKilledByTheOomKiller()
  for (const sleep of sleeps) expect(lab.fateOf(fates, sleep)).toHaveBeenKilledByTheOomKiller()

  // test011's own limit was hit, and test011 is the group the kernel killed.
  expect(oom.oomMemcg).toBe(test011.kernelPath)
  expect(oom.groupKill).toBe(test011.kernelPath)
  const events = await test011.memoryEvents()
  if (lab.has('oom_group_kill')) expect(events.oom_group_kill).toBe(1)
})
