/**
 * @oomlab-image runtimes
 *
 * The same pod with the kubelet's `singleProcessOOMKill: true` (Kubernetes 1.32, PR 126096), or a kubelet
 * before 1.28: no unified key, so the container's memory.oom.group stays 0. The worker that outgrows the
 * container's 192M limit is killed alone (stress-ng restarts it, and it is killed again); PID 1, the idle
 * workers and stress-ng itself live, and the runtime still reports the container running.
 */
import { describe } from 'vitest'
import { experiment, expect } from '../src/experiment/fixtures.js'
import { FORKING_SERVER, IDLE_SERVER, OCI_RUNTIMES, kubeletUnified } from '../src/experiment/runtime.js'

describe.each(OCI_RUNTIMES)('%s', (name) => {
  experiment(`${name}: singleProcessOOMKill (no unified key): only the worker that outgrew the limit dies, PID 1 and the other workers live`, async ({ lab, runtime }) => {
    const unified = kubeletUnified({ singleProcessOOMKill: true })
    const pod = await runtime.pod()
    const sidecar = await runtime.oci(name, pod, 'sidecar', { workload: IDLE_SERVER, ...(unified && { unified }) })
    await sidecar.waitForWorkload()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, memoryLimit: '192M', ...(unified && { unified }) })
    await app.waitForWorkload()
    expect(app.cgroup.settings['memory.oom.group']).toBe('0')
    await app.runStressNg()

    await app.cgroup.waitForMemoryEvent('oom_kill', { atLeast: 1 })
    await lab.waitForOomEvent((e) => e.killed.length > 0, `a "Killed process" record for ${app.cgroup.name}`)
    await lab.waitForKillRecords()
    // The kills so far, read before judging: stress-ng restarts its worker, which pushes again.
    const events = lab.oomEvents().filter((e) => e.killed.length > 0)

    const fates = await lab.fates()
    // PID 1, its idle workers, stress-ng and its vm stressor: all alive in the container's cgroup.
    for (const m of app.members.filter((x) => x.role !== 'stress-ng vm worker')) expect(lab.fateOf(fates, m)).toHaveSurvived()
    for (const m of sidecar.members) expect(lab.fateOf(fates, m)).toHaveSurvived()
    // Each OOM kill took exactly one process, a stress-ng vm worker, for the container's own limit.
    expect(events.length).toBeGreaterThanOrEqual(1)
    for (const e of events) {
      expect(e.oomMemcg).toBe(app.cgroup.kernelPath)
      expect(e.groupKill).toBeUndefined()
      expect(e.killed).toHaveLength(1)
      expect(lab.fateOf(fates, { pid: e.killed[0]!.pid }).member.role).toBe('stress-ng vm worker')
    }
    expect(await app.state('after the kill')).toMatchObject({ status: 'running' })
  })
})
