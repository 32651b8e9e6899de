/**
 * @oomlab-image runtimes
 *
 * The article's three scenarios as its readers would run them in LXC: application containers
 * (`lxc-execute`) whose configs carry the settings (`lxc.cgroup2.memory.max`, `lxc.cgroup2.memory.oom.group`),
 * each container's cgroup where `lxc.cgroup.dir.container` puts it: test01/test011 and test01/test012, as
 * the article names them. Inside each, LXC's init runs the article's shell as a server: two idle workers
 * and, once the gate opens, stress-ng. LXC's own view (lxc-info, and its log of how the init ended) is kept
 * beside the kernel's.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'
import { FORKING_SERVER, IDLE_SERVER } from '../src/experiment/runtime.js'
import { expectKilledWhole, expectOnlyTheWorkerKilled } from './containers.js'

experiment('LXC, lxc.cgroup2.memory.oom.group = 0 on the container: only the memory hog is killed, the container runs on', async ({ lab, runtime }) => {
  const test01 = await lab.cgroup('test01')
  const c = await runtime.lxc(test01, 'test011', { workload: FORKING_SERVER, cgroup: { 'memory.max': '192M', 'memory.swap.max': '0', 'memory.oom.group': '0' } })
  await c.waitForWorkload()
  expect(c.cgroup.settings).toMatchObject({ 'memory.max': String(192 * 2 ** 20), 'memory.oom.group': '0' })
  await c.runStressNg()

  await expectOnlyTheWorkerKilled(lab, c)
  expect(await c.state('after the kill')).toMatchObject({ state: 'RUNNING' })
})

experiment('LXC, lxc.cgroup2.memory.oom.group = 1 on the container: every task in it is killed, LXC\'s init too, and the container is gone', async ({ lab, runtime }) => {
  const test01 = await lab.cgroup('test01')
  const c = await runtime.lxc(test01, 'test011', { workload: FORKING_SERVER, cgroup: { 'memory.max': '192M', 'memory.swap.max': '0', 'memory.oom.group': '1' } })
  await c.waitForWorkload()
  expect(c.cgroup.settings['memory.oom.group']).toBe('1')
  await c.runStressNg()

  // LXC removes the container's cgroup once its init is gone: the article's test01 says when all are.
  const { oom, status } = await expectKilledWhole(lab, c, test01)
  expect(oom.groupKill, `the group the kernel killed: ${oom.groupKill}`).toBe(c.cgroup.kernelPath)
  // LXC's log: "Child <init> ended on signal Killed(9)"; lxc-info no longer knows the container.
  expect(status).toBe(137)
  expect(await c.state('after the kill')).toMatchObject({ error: expect.stringMatching(/doesn't exist/) })
})

experiment('LXC, limit and memory.oom.group=1 on the parent test01 of two containers: every task in both is killed', async ({ lab, runtime }) => {
  const test01 = await lab.cgroup('test01', { 'memory.max': '192M', 'memory.oom.group': 1 })
  const idle = await runtime.lxc(test01, 'test012', { workload: IDLE_SERVER, cgroup: { 'memory.swap.max': '0' } })
  await idle.waitForWorkload()
  const c = await runtime.lxc(test01, 'test011', { workload: FORKING_SERVER, cgroup: { 'memory.swap.max': '0' } })
  await c.waitForWorkload()
  await c.runStressNg()

  const oom = await lab.waitForGroupKill(test01)
  await test01.waitUntilEmpty()
  await lab.waitForKillRecords()

  const fates = await lab.fates()
  const inside = fates.filter((f) => f.member.cgroup.startsWith('test01/'))
  expect(inside.length).toBeGreaterThanOrEqual(9)
  for (const f of inside) expect(f).toHaveDied()
  expect(lab.fateOf(fates, c.init)).toHaveBeenKilledByTheOomKiller()
  expect(lab.fateOf(fates, idle.init)).toHaveBeenKilledByTheOomKiller()
  expect(oom.oomMemcg, `the cgroup whose limit was hit: ${oom.oomMemcg}`).toBe(test01.kernelPath)
  expect(oom.groupKill, `the group the kernel killed: ${oom.groupKill}`).toBe(test01.kernelPath)
})
