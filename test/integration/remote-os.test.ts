/**
 * The seam across a channel: RemoteOs talking to the agent's functions over a line stream, with this
 * host's LocalOs behind them, as the guest agent serves it. Frames are checked, errors keep their class,
 * and a broken channel fails every waiting call at once with the reason.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { LocalOs } from '../../src/os/local.js'
import { RemoteOs } from '../../src/os/remote.js'
import { parseFrame, memoryPipe } from '../../src/os/wire.js'
import { serveOs } from '../../src/os/serve.js'
import { cgMountPoint, cgCreate } from '../../src/cgroup/cgroupfs.js'
import { killAndRemoveSync } from '../../src/os/kill.js'
import { KernelTimeoutError } from '../../src/util/errors.js'
import { OsError } from '../../src/os/os.js'

describe('the wire', () => {
  it('takes birpc requests and answers, and refuses anything else by name', () => {
    expect(parseFrame('{"t":"q","i":"a1","m":"facts","a":[]}')).toMatchObject({ m: 'facts' })
    expect(parseFrame('{"t":"s","i":"a1","r":1}')).toMatchObject({ r: 1 })
    expect(() => parseFrame('OOMLAB {"type":"hello"}')).toThrow(/not a frame \(not JSON\)/)
    expect(() => parseFrame('{"t":"q","m":7,"a":[]}')).toThrow(/not a birpc request or answer/)
    expect(() => parseFrame('[1,2]')).toThrow(/not a birpc request or answer/)
  })
})

const mount = cgMountPoint()
const root = process.getuid?.() === 0
const why = !mount ? 'no cgroup2 mount on this host' : !root ? 'needs root to create cgroups' : ''

describe('RemoteOs against this host', () => {
  const opened: { local: LocalOs; remote: RemoteOs }[] = []
  afterEach(async () => {
    for (const { local, remote } of opened.splice(0)) {
      await remote.dispose()
      await local.dispose()
    }
  })
  const open = () => {
    const p = memoryPipe()
    const local = new LocalOs()
    serveOs(local, p.agent, { uptimeMs: () => 1, onBroken: () => undefined })
    const remote = new RemoteOs(p.host, { name: 'test agent' })
    opened.push({ local, remote })
    return { ...p, local, remote }
  }

  it('answers facts and file batches in one round trip each', async () => {
    const { remote } = open()
    const facts = await remote.facts()
    expect(facts.release).toMatch(/^\d+\.\d+/)
    const r = await remote.run([
      { op: 'read', path: '/proc/sys/kernel/osrelease' },
      { op: 'exists', path: '/nonexistent' },
      { op: 'read', path: '/nonexistent' },
      { op: 'proc', pid: process.pid },
    ])
    expect(r[0]).toEqual({ ok: true, value: `${facts.release}\n` })
    expect(r[1]).toEqual({ ok: true, value: false })
    expect(r[2]).toMatchObject({ ok: false, code: 'ENOENT' })
    expect(r[3]).toMatchObject({ ok: true, value: { pid: process.pid, state: expect.any(String) } })
    expect(remote.calls).toBe(2)
  })

  it.skipIf(why !== '')(`waits on the kernel's events over the channel; a timeout keeps its class${why ? ` (skipped: ${why})` : ''}`, async () => {
    const { remote } = open()
    const top = join(mount!, `oomlab-unit-remote-${process.pid}-${randomBytes(3).toString('hex')}`)
    await cgCreate(top)
    try {
      const s = await remote.spawn({ argv: ['sleep', '7200'], cgroup: top, user: { uid: 1000, gid: 1000 }, cwd: '/tmp', stdin: 'ignore', timeoutMs: 10_000 })
      const early = remote.waitKeyed({ path: join(top, 'cgroup.events'), key: 'populated', cmp: 'eq', value: 0, expected: 'populated 0' }, 100)
      await expect(early).rejects.toBeInstanceOf(KernelTimeoutError)
      await expect(early).rejects.toThrow(/last seen: populated 1/)
      const empty = remote.waitKeyed({ path: join(top, 'cgroup.events'), key: 'populated', cmp: 'eq', value: 0, expected: 'populated 0' }, 5000)
      process.kill(s.pid, 'SIGKILL')
      const seen = await empty
      expect(seen.values.populated).toBe(0)
      expect(seen.atUs).toBeGreaterThan(0)
      await remote.waitExit([{ pid: s.pid, startTime: s.startTime, label: 'sleep' }], 5000)
    } finally {
      killAndRemoveSync(top)
    }
  })

  it('keeps an OsError\'s class, operation and errno code across the wire', async () => {
    const { remote } = open()
    // A PID above pid_max names no process: its oom_score_adj is not there to write.
    const failed = await remote.setOomScoreAdj(2 ** 22 + 1, -1000).then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(failed).toBeInstanceOf(OsError)
    expect(failed).toMatchObject({ code: 'ENOENT', reason: 'ENOENT', op: { op: 'write', path: `/proc/${2 ** 22 + 1}/oom_score_adj`, data: '-1000' } })
    expect((failed as Error).message).toBe(`write "-1000" to /proc/${2 ** 22 + 1}/oom_score_adj: ENOENT`)
  })

  it('fails every waiting call at once when a bad frame arrives, naming it', async () => {
    const { remote, inject } = open()
    const pending = remote.waitExit([{ pid: process.pid, startTime: -1, label: 'this test' }], 60_000)
    inject('garbage from a dying guest\n')
    await expect(pending).rejects.toThrow(/the channel to the guest agent broke \(not a frame \(not JSON\): "garbage from a dying guest"\)/)
    await expect(remote.facts()).rejects.toThrow(/broke/)
  })
})
