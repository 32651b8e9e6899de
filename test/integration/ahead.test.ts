/**
 * Guests restored ahead (src/vm/ahead.ts), on real guests of the lab snapshot: claimed and resumed pristine,
 * and gone with whoever ends the claim. The claim's end kills QEMU: without that, the SIGKILL test finds
 * the claimer's QEMU still running (tried by removing the holder's 'close' handler).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from 'node:net'
import { dir as tmpDir } from 'tmp-promise'
import { prepareLabGuest } from '../../src/vm/prepare.js'
import { openGuestOs, type GuestOs, type PreparedGuest } from '../../src/vm/restore.js'
import { GuestsAhead } from '../../src/vm/ahead.js'
import { projectRoot } from '../../src/util/paths.js'
import { labGuestSkipReason } from '../helpers/lab-guest.js'
import { startScript } from '../helpers/oomlab.js'
import { until } from '../helpers/poll.js'
import { readStat } from '../../src/proc/procfs.js'
import { ROOT } from '../../src/experiment/lab.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'

const T = timeoutScale()
const why = labGuestSkipReason()

/** Running: in /proc and not a zombie. */
const alive = (pid: number) => readStat(pid) !== undefined && readStat(pid)!.state !== 'Z'


describe.skipIf(why !== '')(`guests restored ahead${why ? ` (skipped: ${why})` : ''}`, () => {
  let guest: PreparedGuest
  let ahead: GuestsAhead | undefined
  const opened: GuestOs[] = []

  beforeAll(async () => {
    guest = await prepareLabGuest({ kernel: 'bookworm', accel: 'auto' })
  }, 120_000 * T)

  afterEach(async () => {
    for (const os of opened.splice(0)) await os.dispose()
    await ahead?.dispose()
    ahead = undefined
  })

  const start = async (count: number) => (ahead = await GuestsAhead.start(guest.spec, guest.snapshot, count, { timeoutMs: 30_000 * T }))
  const open = async (g: PreparedGuest) => {
    const os = await openGuestOs(g)
    opened.push(os)
    return os
  }

  it('hands a guest restored ahead to the claimer, which resumes it pristine; its end takes QEMU and its folder', { timeout: 60_000 * T }, async () => {
    const w = await start(2)
    const [a, b] = await Promise.all([open({ ...guest, ahead: w.socketPath }), open({ ...guest, ahead: w.socketPath })])
    expect([a!.restoredAhead, b!.restoredAhead]).toEqual([true, true])
    expect(a!.vm.pid).not.toBe(b!.vm.pid)
    // Each its own pristine guest: the same first PID, and one's file not in the other.
    const run = async (os: GuestOs, script: string, expect: string) => {
      const cgroup = (await os.facts()).cgroup2!.mountPoint
      const p = await os.spawn({ argv: ['/bin/sh', '-c', script], cgroup, user: ROOT, cwd: '/', stdin: 'ignore', timeoutMs: 10_000 })
      await os.waitOutput(p.id, expect, 0, expect, 10_000 * T)
      return p.pid
    }
    expect(await run(a!, 'touch /tmp/mine; echo done', 'done')).toBe(await run(b!, 'echo done', 'done'))
    await run(b!, 'test -e /tmp/mine && echo there || echo absent', 'absent')
    // Each QEMU in a session of its own, not the holder's (this process's): the scheduler's autogroups
    // share the CPU between sessions, and guests restored ahead in the holder's session ran some experiments 3-8 times slower.
    for (const os of [a!, b!]) expect(readStat(os.vm.pid!)!.session).toBe(os.vm.pid)
    const s = a!.stats()
    expect(s.restoredAhead).toBe(true)
    expect(s.waitedMs!).toBeLessThan(s.restoreMs!)
    const pid = a!.vm.pid!
    const dir = a!.vm.workDir
    await a!.dispose()
    expect(alive(pid)).toBe(false)
    expect(existsSync(dir)).toBe(false)
  })

  it('restores its own when none is left, or the holder is gone', { timeout: 60_000 * T }, async () => {
    const w = await start(1)
    const first = await open({ ...guest, ahead: w.socketPath })
    const second = await open({ ...guest, ahead: w.socketPath })
    expect([first.restoredAhead, second.restoredAhead]).toEqual([true, false])
    const socket = w.socketPath
    await w.dispose()
    expect(existsSync(socket)).toBe(false)
    const third = await open({ ...guest, ahead: socket })
    expect(third.restoredAhead).toBe(false)
  })

  it('closes a claim socket that sends what is not a claim, and offers nothing for another snapshot', { timeout: 60_000 * T }, async () => {
    const w = await start(1)
    const talk = (line: string) =>
      new Promise<string>((resolve) => {
        const s = connect(w.socketPath)
        let got = ''
        s.on('data', (d) => (got += d.toString()))
        s.on('close', () => resolve(got === '' ? 'closed' : got.trim()))
        s.on('error', () => undefined)
        s.write(line)
        setTimeout(() => s.end(), 3000)
      })
    expect(await talk('not json\n')).toBe('closed')
    expect(await talk('{"claim":"x","extra":1}\n')).toBe('closed')
    expect(await talk('{"claim":"another-key"}\n')).toMatch(/^\{"none":"the guests restored ahead are of snapshot /)
    // Still there for a real claim.
    expect((await open({ ...guest, ahead: w.socketPath })).restoredAhead).toBe(true)
  })

  it('kills the QEMU of a claimer that dies (SIGKILL), and removes its folder', { timeout: 60_000 * T }, async () => {
    const w = await start(1)
    const work = await tmpDir({ unsafeCleanup: true })
    try {
      const claimer = startScript(
        work.path,
        'claimer',
        `import { openGuestOs } from ${JSON.stringify(join(projectRoot, 'src/vm/restore.ts'))}
const os = await openGuestOs(${JSON.stringify({ ...guest, ahead: w.socketPath })})
console.log(JSON.stringify({ ahead: os.restoredAhead, pid: os.vm.pid, dir: os.vm.workDir }))
setInterval(() => undefined, 1000)
`,
      )
      const said = JSON.parse(await claimer.line(/^\{/)) as { ahead: boolean; pid: number; dir: string }
      expect(said.ahead).toBe(true)
      expect(alive(said.pid)).toBe(true)
      claimer.kill('SIGKILL')
      await claimer.exit
      await until('the claimed QEMU gone', () => !alive(said.pid))
      await until('its folder removed', () => !existsSync(said.dir))
    } finally {
      await work.cleanup()
    }
  })
})
