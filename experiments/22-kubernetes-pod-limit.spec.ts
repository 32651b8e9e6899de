/**
 * @oomlab-image runtimes
 *
 * The pod's limit instead of the container's: the pod cgroup has memory.max=192M and no memory.oom.group
 * of its own (what a kubelet writes for a pod-level limit), each container the kubelet's
 * memory.oom.group=1 and no limit. The worker's allocation hits the pod's limit: the OOM domain is the
 * pod, and the kernel kills the highest cgroup with memory.oom.group=1 between the victim and the pod,
 * the victim's container, whole; the sidecar, in the same OOM domain, lives (spec 13 in Kubernetes' layout).
 */
import { describe } from 'vitest'
import { experiment, expect } from '../src/experiment/fixtures.js'
import { FORKING_SERVER, IDLE_SERVER, OCI_RUNTIMES, kubeletUnified } from '../src/experiment/runtime.js'
import { expectKilledWhole } from './containers.js'

describe.each(OCI_RUNTIMES)('%s', (name) => {
  experiment(`${name}: the pod's limit, memory.oom.group=1 on each container: the victim's container dies whole, the sidecar lives`, async ({ lab, runtime }) => {
    const unified = kubeletUnified({ singleProcessOOMKill: false })
    const pod = await runtime.pod({ 'memory.max': '192M', 'memory.oom.group': 0 })
    const sidecar = await runtime.oci(name, pod, 'sidecar', { workload: IDLE_SERVER, unified })
    await sidecar.waitForWorkload()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, unified })
    await app.waitForWorkload()
    expect(app.cgroup.settings['memory.max']).toBe('max')
    await app.runStressNg()

    const { oom, status, fates } = await expectKilledWhole(lab, app)
    // The sidecar, in the same OOM domain, lives: the group killed is the app's container, not the pod.
    for (const m of sidecar.members) expect(lab.fateOf(fates, m)).toHaveSurvived()
    expect(oom.oomMemcg, `the cgroup whose limit was hit: ${oom.oomMemcg}`).toBe(pod.kernelPath)
    expect(oom.groupKill, `the group the kernel killed: ${oom.groupKill}`).toBe(app.cgroup.kernelPath)
    expect(status).toBe(137)
    expect(await sidecar.state('after the kill')).toMatchObject({ status: 'running' })
  })
})
