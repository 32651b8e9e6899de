/**
 * Beyond the article: why the harness runs the workload as uid 1000. Run as root, stress-ng sets
 * oom_score_adj -1000 on its main process and on the vm stressor (only the worker gets 1000), and
 * the group kill spares -1000 tasks by design: the shell and the sleeps die, stress-ng lives on and
 * the cgroup is never emptied.
 */
import { experiment, expect } from '../src/experiment/fixtures.js'
import { ROOT } from '../src/experiment/lab.js'

experiment('stress-ng as root: the group kill spares its -1000 processes and the cgroup is not emptied', async ({ lab }) => {
  await lab.cgroup('test01')
  const test011 = await lab.cgroup('test01/test011', { 'memory.max': '192M', 'memory.oom.group': 1 })

  // As the article's procedure, but everything as root.
  const shell = await lab.shell(test011, { as: ROOT })
  const sleeps = [await lab.nohupSleep(test011, { as: ROOT }), await lab.nohupSleep(test011, { as: ROOT })]
  await shell.runStressNg()

  const oom = await lab.waitForGroupKill(test011)
  await lab.waitForExit([shell.member, ...sleeps])
  await lab.waitForKillRecords()

  const fates = await lab.fates()
  const role = (r: string) => fates.filter((f) => f.member.role === r)
  expect(lab.fateOf(fates, shell)).toHaveBeenKilledByTheOomKiller()
  for (const sleep of sleeps) expect(lab.fateOf(fates, sleep)).toHaveBeenKilledByTheOomKiller()
  // What stress-ng did to itself, and what the kernel made of it.
  expect(role('stress-ng')).toHaveLength(1)
  expect(role('stress-ng vm stressor')).toHaveLength(1)
  for (const f of [...role('stress-ng'), ...role('stress-ng vm stressor')]) {
    expect(f.member.oomScoreAdj).toBe(-1000)
    expect(f).toHaveSurvived()
  }
  expect(role('stress-ng vm worker').some((f) => f.killRecord !== undefined)).toBe(true)
  expect(oom.groupKill).toBe(test011.kernelPath)
  expect(await test011.procs()).not.toEqual([])
  lab.note(`survivors of the group kill: ${fates.filter((f) => f.alive).map((f) => `${f.member.role} ${f.member.pid} (oom_score_adj ${f.member.oomScoreAdj})`).join(', ')}`)
})
