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
import { FORKING_SERVER, OCI_RUNTIMES, kubeletUnified } from '../src/experiment/runtime.js'
import { expectOnlyTheWorkerKilled } from './containers.js'

describe.each(OCI_RUNTIMES)('%s', (name) => {
  experiment(`${name}: a DaemonSet writes 0 into the container's memory.oom.group after start: single-process kills again`, async ({ lab, runtime }) => {
    const pod = await runtime.pod()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, memoryLimit: '192M', unified: kubeletUnified({ singleProcessOOMKill: false }) })
    await app.waitForWorkload()
    expect(await app.cgroup.setting('memory.oom.group')).toBe('1')
    // The operator's write, as root on the node, into the cgroup the runtime made.
    expect(await app.cgroup.set('memory.oom.group', '0')).toBe('0')
    await app.runStressNg()
    await expectOnlyTheWorkerKilled(lab, app)
    expect(await app.state('after the kill')).toMatchObject({ status: 'running' })
  })

  experiment(`${name}: ${name} update with unified memory.oom.group=0 after start: the runtime writes it, single-process kills again`, async ({ lab, runtime }) => {
    const pod = await runtime.pod()
    const app = await runtime.oci(name, pod, 'app', { workload: FORKING_SERVER, memoryLimit: '192M', unified: kubeletUnified({ singleProcessOOMKill: false }) })
    await app.waitForWorkload()
    const update = await app.update({ unified: { 'memory.oom.group': '0' } })
    expect(update.exitCode, update.stderr).toBe(0)
    expect(await app.cgroup.setting('memory.oom.group')).toBe('0')
    await app.runStressNg()
    await expectOnlyTheWorkerKilled(lab, app)
    expect(await app.state('after the kill')).toMatchObject({ status: 'running' })
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
