/**
 * A rehearsal of an experiment, run by the agent at boot before the guest is snapshotted: every kind of
 * call, through the same wire, on this machine. Under TCG, V8 compiling a function the first time it runs
 * cost more than the call itself (openTree took 0.5 s in a restored guest); the snapshot keeps the
 * compiled code, so no restored guest compiles it again.
 */
import { join } from 'node:path'
import { LocalOs } from '../../os/local.js'
import { RemoteOs } from '../../os/remote.js'
import { serveOs } from '../../os/serve.js'
import { memoryPipe } from '../../os/wire.js'
import { GUEST_USER } from './layout.js'

export async function rehearse(os: LocalOs, uptimeMs: () => number): Promise<void> {
  const pipe = memoryPipe()
  const server = serveOs(os, pipe.agent, { uptimeMs, onBroken: () => undefined })
  const remote = new RemoteOs(pipe.host, { name: 'rehearsal' })
  const user = { uid: GUEST_USER.uid, gid: GUEST_USER.gid }
  try {
    await remote.ping()
    await remote.facts()
    await remote.clock()
    await remote.followKernelLog(() => undefined)
    const tree = await remote.openTree({ user, nonce: '000000' })
    const leaf = join(tree.dir, 'leaf')
    await remote.run([
      { op: 'mkdir', path: leaf },
      { op: 'exists', path: join(leaf, 'memory.oom.group') },
      { op: 'write', path: join(leaf, 'memory.max'), data: 'max' },
      { op: 'read', path: join(leaf, 'memory.events') },
      { op: 'proc', pid: 1 },
      { op: 'procs', path: leaf },
    ])
    const sh = await remote.spawn({ argv: ['sh'], cgroup: leaf, user, cwd: tree.cwd, stdin: 'pipe', timeoutMs: 60_000 })
    const mark = await remote.outputMark(sh.id)
    await remote.type(sh.id, 'echo rehearsed $$')
    await remote.waitOutput(sh.id, String.raw`rehearsed (\d+)`, mark, 'the shell to answer', 60_000)
    await remote.output(sh.id)
    const sleep = await remote.spawn({ argv: ['nohup', 'sleep', '600'], cgroup: leaf, user, cwd: tree.cwd, stdin: 'ignore', timeoutMs: 60_000 })
    await remote.setOomScoreAdj(sleep.pid, 0)
    await remote.run([{ op: 'procs', path: leaf }, { op: 'proc', pid: sleep.pid }])
    const empty = remote.waitKeyed({ path: join(leaf, 'cgroup.events'), key: 'populated', cmp: 'eq', value: 0, expected: 'the rehearsal leaf to empty' }, 60_000)
    for (const pid of [sh.pid, sleep.pid]) process.kill(pid, 'SIGKILL')
    await empty
    await remote.waitExit([{ pid: sleep.pid, startTime: sleep.startTime, label: 'sleep' }, { pid: sh.pid, startTime: sh.startTime, label: 'sh' }], 60_000)
    await remote.kernelLogBarrier()
    await remote.kernelLogMark('oomlab: rehearsal done')
    await remote.closeTree(tree)
  } finally {
    await remote.dispose()
    server.$close()
    os.unfollowKernelLog()
  }
}
