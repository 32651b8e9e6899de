/**
 * @oomlab-image runtimes
 *
 * Kubernetes 1.28 and later on cgroup v2: the kubelet asks the OCI runtime for memory.oom.group=1 on every
 * container's cgroup (linux.resources.unified). A forking server (PID 1, two idle workers, one worker that
 * outgrows the container's 192M limit) in kubepods/burstable/pod<uid>/<container>, run by runc and by crun
 * through conmon, as CRI-O runs them: one worker's allocation takes the whole container, its PID 1 too;
 * the runtime reports the container stopped and conmon its exit status, 128 + SIGKILL; the pod's sidecar
 * container lives on.
 */
import { describe } from 'vitest'
import { experiment, expect } from '../src/experiment/fixtures.js'
import { FORKING_SERVER, IDLE_SERVER, OCI_RUNTIMES, kubeletUnified } from '../src/experiment/runtime.js'
import { expectKilledWhole } from './containers.js'

describe.each(OCI_RUNTIMES)('%s', (name) => {
  experiment(`${name}: Kubernetes 1.28+ (memory.oom.group=1 from the kubelet): one worker outgrows the limit, the whole container dies, the sidecar lives`, async ({ lab, runtime }) => {
    const pod = await runtime.pod()
    const sidecar = await runtime.oci(name, pod, 'sidecar', { workload: IDLE_SERVER, unified: kubeletUnified({ singleProcessOOMKill: false }) })
    await sidecar.waitForWorkload()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, memoryLimit: '192M', unified: kubeletUnified({ singleProcessOOMKill: false }) })
    await app.waitForWorkload()
    // The runtime wrote the kubelet's request into the container's cgroup.
    expect(app.cgroup.settings['memory.oom.group']).toBe('1')
    await app.runStressNg()

    // Every process of the container dies, its PID 1 by the OOM killer's own hand.
    const { oom, status, fates } = await expectKilledWhole(lab, app)
    expect(oom.oomMemcg, `the cgroup whose limit was hit: ${oom.oomMemcg}`).toBe(app.cgroup.kernelPath)
    expect(oom.groupKill, `the group the kernel killed: ${oom.groupKill}`).toBe(app.cgroup.kernelPath)
    // The runtime's view: stopped; conmon's: killed by SIGKILL (128 + 9), as a kubelet reports exit code 137.
    expect(status).toBe(137)
    expect(await app.state('after the kill')).toMatchObject({ status: 'stopped' })
    // The sidecar, in the same pod but its own container cgroup, is untouched.
    for (const m of sidecar.members) expect(lab.fateOf(fates, m)).toHaveSurvived()
    expect(await sidecar.state('after the kill')).toMatchObject({ status: 'running' })
  })
})
