/**
 * cgroupfs helpers against the host's real cgroup2 hierarchy: joining before exec, the kernel's
 * "populated" events, teardown. Memory is not needed for these, so they run even on a hybrid host
 * (as root, in a cgroup of their own that they remove).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { join, basename } from 'node:path'
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { randomBytes } from 'node:crypto'
import { cgMountPoint, cgCreate, cgReadProcs, cgIsPopulated, cgDestroy } from '../../src/cgroup/cgroupfs.js'
import { waitUntilEmpty, waitForKey } from '../../src/cgroup/wait.js'
import { startInCgroup } from '../../src/proc/spawn.js'
import { readCgroupPath, liveness, readStat } from '../../src/proc/procfs.js'
import { killTree, killAndRemoveSync, reapStaleTrees } from '../../src/os/kill.js'
import { ownerOf, treeName, parseTreeName, type TreeOwner } from '../../src/proc/owner.js'
import { KernelTimeoutError } from '../../src/util/errors.js'

const mount = cgMountPoint()
const root = process.getuid?.() === 0
const why = !mount ? 'no cgroup2 mount on this host' : !root ? 'needs root to create cgroups' : ''

describe.skipIf(why !== '')(`cgroupfs on this host's kernel${why ? ` (skipped: ${why})` : ''}`, () => {
  const top = join(mount ?? '/nonexistent', `oomlab-unit-${process.pid}-${randomBytes(3).toString('hex')}`)
  const user = { uid: 1000, gid: 1000 }
  beforeAll(() => cgCreate(top))
  afterAll(() => killAndRemoveSync(top))

  it('starts a program inside the cgroup, as the unprivileged user, before it runs', async () => {
    const cg = join(top, 'join')
    await cgCreate(cg)
    const { id, workload } = await startInCgroup(['sh'], { cgroup: cg, user, cwd: '/tmp', stdin: 'pipe' })
    expect(await cgReadProcs(cg)).toEqual([id.pid])
    expect(readCgroupPath(id.pid)).toMatch(new RegExp(`/${top.split('/').pop()}/join$`))
    // The shell itself says who it runs as and where: after setpriv's exec, same PID.
    workload.type('echo "uid=$(id -u) pid=$$ cg=$(grep ^0:: /proc/self/cgroup)"')
    const [, uid, pid, path] = (await workload.waitForOutput(/uid=(\d+) pid=(\d+) cg=0::(\S+)/, 'the shell to answer', 5000))!
    expect([Number(uid), Number(pid)]).toEqual([1000, id.pid])
    expect(path).toMatch(/\/join$/)
    expect(readStat(id.pid)?.comm).toBe('sh')
    expect(liveness(id)).toBe('alive')
    await killTree(cg, 20_000)
    expect(liveness(id)).not.toBe('alive')
    expect(await cgIsPopulated(cg)).toBe(false)
    await cgDestroy(cg)
  })

  it('wakes on the kernel\'s "populated 0" event, and times out saying what it saw', async () => {
    const cg = join(top, 'events')
    await cgCreate(cg)
    const { workload } = await startInCgroup(['sleep', '7200'], { cgroup: cg, user, cwd: '/tmp' })
    const timeout = waitUntilEmpty(cg, { timeoutMs: 200 })
    await expect(timeout).rejects.toBeInstanceOf(KernelTimeoutError)
    await expect(timeout).rejects.toThrow(/waiting for "populated 0" in .*cgroup\.events; last seen: populated 1/)
    const empty = waitForKey(cg, 'cgroup.events', 'populated', (v) => v === 0, 'populated 0', { timeoutMs: 5000 })
    workload.subprocess.kill('SIGKILL')
    expect((await empty).get('populated')).toBe(0)
    await cgDestroy(cg)
  })

  it('removes stale trees of dead runs, and only those', async () => {
    const me = ownerOf(process.ppid)!
    const name = (o: Partial<TreeOwner>, r: string) => treeName({ ...me, ...o }, r)
    const stale = join(top, name({ pid: 999999 }, 'aaaaaa'))
    // The PID lives, but it is another process than the one that made the tree.
    const reused = join(top, name({ startTime: me.startTime + 1 }, 'bbbbbb'))
    const alive = join(top, name({}, 'cccccc'))
    // A dead PID in another PID namespace: its run may live in a container we cannot see into.
    const foreign = join(top, name({ pid: 999999, pidns: me.pidns + 1 }, 'dddddd'))
    const other = join(top, 'oomlab-999999-abcdef')
    for (const d of [stale, reused, alive, foreign, other]) mkdirSync(d)
    // Their temp dirs, named as tmp-promise names them.
    const staleWork = join(tmpdir(), `oomlab-work-${basename(stale)}-4242-abcDEF123456`)
    const aliveWork = join(tmpdir(), `oomlab-work-${basename(alive)}-4242-abcDEF123456`)
    for (const d of [staleWork, aliveWork]) mkdirSync(d)
    mkdirSync(join(stale, 'test01'))
    const { workload } = await startInCgroup(['sleep', '7200'], { cgroup: join(stale, 'test01'), user, cwd: '/tmp' })
    const said: string[] = []
    expect(reapStaleTrees(top, (l: string) => said.push(l)).sort()).toEqual([basename(stale), basename(reused)].sort())
    expect(said.sort()).toEqual([...[stale, reused].map((d) => `removed stale cgroup tree ${d} left by an interrupted run`), `removed stale temp dir ${staleWork} left by an interrupted run`].sort())
    expect([existsSync(staleWork), existsSync(aliveWork)]).toEqual([false, true])
    rmSync(aliveWork, { recursive: true })
    expect([stale, reused].map(existsSync)).toEqual([false, false])
    expect([alive, foreign, other].map(existsSync)).toEqual([true, true, true])
    await workload.exit
    expect(workload.signal).toBe('SIGKILL')
    expect(readFileSync(join(top, 'cgroup.procs'), 'utf8')).toBe('')
  })

  it('names a tree after its owner, and reads the owner back', () => {
    const me = ownerOf(process.pid)!
    expect(me.startTime).toBeGreaterThan(0)
    const name = treeName(me, 'abcdef')
    expect(name).toMatch(/^oomlab-\d+-[0-9a-z]+-[0-9a-z]+-abcdef$/)
    expect(parseTreeName(name)).toEqual(me)
    for (const bad of ['oomlab-1-abcdef', 'oomlab-1-2-3-ABCDEF', 'xoomlab-1-2-3-abcdef', 'oomlab-1-2-3-abcdef/..'])
      expect(parseTreeName(bad)).toBeUndefined()
  })
})
