/**
 * An experiment of one's own, as a container runtime lays cgroups out: a slice with the memory limit and
 * one scope per container, each with memory.oom.group=1 (what systemd writes for OOMPolicy=kill). The web
 * container outgrows the slice's limit: does the kernel take the whole web container, and only it?
 *
 *   npx oomlab reproduce ./container-runtime.spec.ts     (or plain `npx vitest`)
 *
 * The cgroups here are laid out by hand; experiments/20-24 run real runtimes (runc, crun, LXC) with the
 * `runtime` fixture.
 */
import { experiment, expect } from 'oom-group-lab'

experiment('a slice of two containers, oom.group=1 on each: the one that hit the limit dies whole, its neighbour lives', async ({ lab }) => {
  const slice = await lab.cgroup('runtime.slice', { 'memory.max': '192M' })
  const web = await lab.cgroup('runtime.slice/web.scope', { 'memory.oom.group': 1 })
  const db = await lab.cgroup('runtime.slice/db.scope', { 'memory.oom.group': 1 })

  // The web container: a shell, a helper, and the memory hog; the db container idles.
  const shell = await lab.shell(web)
  const helper = await lab.nohupSleep(web)
  const dbTasks = [await lab.nohupSleep(db), await lab.nohupSleep(db)]

  await shell.runStressNg()
  const oom = await lab.waitForGroupKill(web)
  await web.waitUntilEmpty()
  await lab.waitForKillRecords()

  const fates = await lab.fates()
  expect(lab.fateOf(fates, shell)).toHaveBeenKilledByTheOomKiller()
  expect(lab.fateOf(fates, helper)).toHaveBeenKilledByTheOomKiller()
  for (const t of dbTasks) expect(lab.fateOf(fates, t)).toHaveSurvived()
  // The limit hit was the slice's; the group the kernel killed is the web container's scope, not the slice.
  expect(oom.oomMemcg).toBe(slice.kernelPath)
  expect(oom.groupKill).toBe(web.kernelPath)
  expect(await db.procs()).toEqual(expect.arrayContaining(dbTasks.map((t) => t.pid)))
})
