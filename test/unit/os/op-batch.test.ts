/** The typed batch (src/os/batch.ts): operations added by what they do, answered by name, in one round trip. */
import { describe, it, expect, afterEach } from 'vitest'
import { readFileSync } from 'node:fs'
import { LocalOs } from '../../../src/os/local.js'
import { RemoteOs } from '../../../src/os/remote.js'
import { serveOs } from '../../../src/os/serve.js'
import { memoryPipe } from '../../../src/os/wire.js'
import { OpBatch } from '../../../src/os/batch.js'
import { OsError } from '../../../src/os/os.js'

describe('OpBatch', () => {
  const opened: { local: LocalOs; remote: RemoteOs }[] = []
  afterEach(async () => {
    for (const { local, remote } of opened.splice(0)) {
      await remote.dispose()
      await local.dispose()
    }
  })

  it('answers each operation by name from one round trip; a failed one names itself and its errno code', async () => {
    const p = memoryPipe()
    const local = new LocalOs()
    serveOs(local, p.agent, { uptimeMs: () => 1, onBroken: () => undefined })
    const remote = new RemoteOs(p.host, { name: 'test agent' })
    opened.push({ local, remote })

    const b = new OpBatch()
    const release = b.read('/proc/sys/kernel/osrelease')
    const missing = b.read('/nonexistent/memory.peak')
    const there = b.exists('/proc/self')
    const me = b.proc(process.pid)
    expect(() => release.value()).toThrow('read: the batch has not run yet')
    await b.run(remote)

    expect(remote.calls).toBe(1)
    expect(release.value()).toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8'))
    expect(there.value()).toBe(true)
    expect(me.value()).toMatchObject({ pid: process.pid, comm: expect.any(String) })
    expect(missing.valueOrUndefined()).toBeUndefined()
    expect(missing.result()).toEqual({ ok: false, error: 'ENOENT', code: 'ENOENT' })
    expect(() => missing.value()).toThrow(OsError)
    expect(() => missing.value()).toThrow('read /nonexistent/memory.peak: ENOENT')
  })
})
