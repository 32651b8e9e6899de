/**
 * The runtime fixture leaves nothing, checked on a restored guest of the runtimes' image: containers of
 * runc, crun and LXC, running or failed to create, are removed with their state, cgroups and monitors,
 * and the guest itself is looked through afterwards. Its own check fails when something outlives it: a
 * conmon stopped (SIGSTOP) cannot reap its container, and the teardown names it.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { prepareLabGuest } from '../../src/vm/prepare.js'
import { openGuestOs, type GuestOs, type PreparedGuest } from '../../src/vm/restore.js'
import { Lab } from '../../src/experiment/lab.js'
import { IDLE_SERVER, Runtime } from '../../src/experiment/runtime.js'
import { RUNTIMES_IMAGE } from '../../src/runtime/image.js'
import type { OciContainer } from '../../src/runtime/oci-container.js'
import { labGuestSkipReason } from '../helpers/lab-guest.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'

const T = timeoutScale()
const why = labGuestSkipReason()

/** What is left in the guest: runtimes' roots, LXC's lock folders, cgroups below the tree, the runtimes' processes. */
const LEFT = [
  'for d in "$1"/runc-root "$1"/crun-root; do [ -d "$d" ] && ls -A "$d" | sed "s|^|state: $d/|"; done',
  '[ -d /run/lxc/lock ] && find /run/lxc/lock -mindepth 1 | sed "s|^|lock: |"',
  'find "$2" -mindepth 1 -type d | sed "s|^|cgroup: |"',
  // LXC's monitor moves to lxc.pivot at the hierarchy's root unless its config says where.
  '[ -d "$(dirname "$2")/lxc.pivot" ] && echo "cgroup: $(dirname "$2")/lxc.pivot"',
  'for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); case "$c" in conmon|lxc-*|runc|crun|sleep) echo "process: ${p#/proc/} $c";; esac; done',
  'true',
].join('\n')

describe.skipIf(why !== '')(`container runtimes' teardown on a restored guest${why ? ` (skipped: ${why})` : ''}`, () => {
  let guest: PreparedGuest
  let os: GuestOs | undefined
  let lab: Lab | undefined

  beforeAll(async () => {
    guest = await prepareLabGuest({ kernel: 'bookworm', accel: 'auto', addition: RUNTIMES_IMAGE })
  }, 300_000 * T)

  afterEach(async () => {
    await lab?.dispose()
    await os?.dispose()
    lab = os = undefined
  })

  const open = async (name: string) => {
    os = await openGuestOs(guest)
    lab = await Lab.open(name, { os })
    return { lab, runtime: await Runtime.open(lab), dir: join(lab.tree.cwd, '..', 'containers') }
  }

  const leftovers = async (dir: string, tree: string) =>
    (await os!.exec({ argv: ['/bin/sh', '-c', LEFT, 'left', dir, tree], timeoutMs: 20_000 })).stdout.split('\n').filter(Boolean)

  it('removes running containers of runc, crun and LXC, and one whose create failed: no state, lock folder, cgroup or process is left', { timeout: 180_000 * T }, async () => {
    const { lab, runtime, dir } = await open('runtime teardown')
    const pod = await runtime.pod()
    const a = await runtime.oci('runc', pod, 'a', { workload: IDLE_SERVER })
    const b = await runtime.oci('crun', pod, 'b', { workload: IDLE_SERVER })
    const c = await runtime.lxc(await lab.cgroup('lxc'), 'c', { workload: IDLE_SERVER, cgroup: {} })
    for (const x of [a, b, c]) await x.waitForWorkload()
    // A file the kernel does not have: the runtime's create fails, after conmon and the bundle were made.
    await expect(runtime.oci('runc', pod, 'bad', { workload: IDLE_SERVER, unified: { 'memory.no-such-file': '1' } })).rejects.toThrow(/could not create container bad/)
    expect((await leftovers(dir, lab.root.dir)).filter((l) => l.startsWith('process: ')).length).toBeGreaterThanOrEqual(9)

    await runtime.dispose()
    // The tree's own cgroups are the lab's (removed with the guest); below the pod, nothing.
    const ours = /^(kubepods|kubepods\/burstable|kubepods\/burstable\/pod[^/]*|conmon|lxc|lxc-execute|lxc\.pivot)$/
    expect((await leftovers(dir, lab.root.dir)).filter((l) => !(l.startsWith(`cgroup: ${lab.root.dir}/`) && ours.test(l.slice(`cgroup: ${lab.root.dir}/`.length))))).toEqual([])
  })

  it('names what outlives it: a stopped conmon, which cannot reap its container', { timeout: 180_000 * T }, async () => {
    const { runtime } = await open('runtime teardown, a stopped conmon')
    const pod = await runtime.pod()
    const a = await runtime.oci('crun', pod, 'a', { workload: IDLE_SERVER })
    await a.waitForWorkload()
    const stopped = await os!.exec({ argv: ['/bin/sh', '-c', 'kill -STOP $(cat "$1")', 'stop', join((a.driver as OciContainer).dir, 'conmon.pid')], timeoutMs: 10_000 })
    expect(stopped.exitCode).toBe(0)
    await expect(runtime.dispose()).rejects.toThrow(/the container runtimes left: conmon of container a-\w+ \(pid \d+\)/)
  })
})
