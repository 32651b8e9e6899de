/**
 * @oomlab-image runtimes
 *
 * What operators did when Kubernetes 1.28 began to kill multi-process containers whole: a DaemonSet that
 * writes 0 into every container's memory.oom.group under kubepods once the runtime has set it up. Written
 * after the container started (and before its worker outgrows the limit), the 0 brings back single-process
 * kills. The runtime's own update does the same with linux.resources.unified {"memory.oom.group": "0"}
 * (`runc update -r FILE`, `crun update -r FILE`); and a later update of the limits alone (what a kubelet
 * sends for an in-place resize) leaves the 0 as it is.
 */
import { describe } from 'vitest'
import { experiment, expect } from '../src/experiment/fixtures.js'
import { FORKING_SERVER, OCI_RUNTIMES, kubeletUnified, type Container } from '../src/experiment/runtime.js'
import type { Lab } from '../src/experiment/lab.js'

/** Only a stress-ng worker dies, once or more (stress-ng restarts it); PID 1 and the other processes live. */
async function expectSingleProcessKills(lab: Lab, app: Container): Promise<void> {
  await app.cgroup.waitForMemoryEvent('oom_kill', { atLeast: 1 })
  await lab.waitForOomEvent((e) => e.killed.length > 0, `a "Killed process" record for ${app.cgroup.name}`)
  await lab.waitForKillRecords()
  const events = lab.oomEvents().filter((e) => e.killed.length > 0)
  const fates = await lab.fates()
  for (const m of app.members.filter((x) => x.role !== 'stress-ng vm worker')) expect(lab.fateOf(fates, m)).toHaveSurvived()
  expect(events.length).toBeGreaterThanOrEqual(1)
  for (const e of events) {
    expect(e.groupKill).toBeUndefined()
    expect(e.killed).toHaveLength(1)
    expect(lab.fateOf(fates, { pid: e.killed[0]!.pid }).member.role).toBe('stress-ng vm worker')
  }
  expect(await app.state('after the kill')).toMatchObject({ status: 'running' })
}

describe.each(OCI_RUNTIMES)('%s', (name) => {
  experiment(`${name}: a DaemonSet writes 0 into the container's memory.oom.group after start: single-process kills again`, async ({ lab, runtime }) => {
    const pod = await runtime.pod()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, memoryLimit: '192M', unified: kubeletUnified({ singleProcessOOMKill: false }) })
    await app.waitForWorkload()
    expect(await app.cgroup.setting('memory.oom.group')).toBe('1')
    // The operator's write, as root on the node, into the cgroup the runtime made.
    expect(await app.cgroup.set('memory.oom.group', '0')).toBe('0')
    await app.runStressNg()
    await expectSingleProcessKills(lab, app)
  })

  experiment(`${name}: ${name} update with unified memory.oom.group=0 after start: the runtime writes it, single-process kills again`, async ({ lab, runtime }) => {
    const pod = await runtime.pod()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, memoryLimit: '192M', unified: kubeletUnified({ singleProcessOOMKill: false }) })
    await app.waitForWorkload()
    const update = await app.update({ unified: { 'memory.oom.group': '0' } })
    expect(update.exitCode, update.stderr).toBe(0)
    expect(await app.cgroup.setting('memory.oom.group')).toBe('0')
    await app.runStressNg()
    await expectSingleProcessKills(lab, app)
  })

  experiment(`${name}: a later ${name} update of the container's resources (an in-place resize) leaves the DaemonSet's 0 as it is`, async ({ runtime }) => {
    const pod = await runtime.pod()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, memoryLimit: '192M', unified: kubeletUnified({ singleProcessOOMKill: false }) })
    await app.waitForWorkload()
    expect(await app.cgroup.set('memory.oom.group', '0')).toBe('0')
    // What a kubelet's UpdateContainerResources sends for a resize: the limits, not the unified map.
    const update = await app.update({ memory: { limit: 256 * 2 ** 20, swap: 256 * 2 ** 20 } })
    expect(update.exitCode, update.stderr).toBe(0)
    expect(await app.cgroup.setting('memory.max')).toBe(String(256 * 2 ** 20))
    expect(await app.cgroup.setting('memory.oom.group')).toBe('0')
  })
})
