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
import { expectOnlyTheWorkerKilled } from './containers.js'

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

    // Each OOM kill took the allocating worker alone; PID 1, its idle workers and stress-ng live.
    const fates = await expectOnlyTheWorkerKilled(lab, app)
    for (const m of sidecar.members) expect(lab.fateOf(fates, m)).toHaveSurvived()
    expect(await app.state('after the kill')).toMatchObject({ status: 'running' })
  })
})
