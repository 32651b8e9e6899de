/**
 * The kernel log follower on this host's /dev/kmsg (read only: a host's log is not ours to write).
 * A follower whose reader has stopped fails every wait at once with that cause, also a wait that
 * begins after the break: no record will come, and a timeout would hide why.
 */
import { describe, it, expect } from 'vitest'
import { constants, accessSync } from 'node:fs'
import { KmsgFollower } from '../../src/kmsg/follower.js'
import { KernelTimeoutError } from '../../src/util/errors.js'

function kmsgReadable(): boolean {
  try {
    accessSync('/dev/kmsg', constants.R_OK)
    return true
  } catch {
    return false
  }
}
const why = process.getuid?.() !== 0 ? 'needs root to read /dev/kmsg' : !kmsgReadable() ? '/dev/kmsg is not readable here' : ''

describe.skipIf(why !== '')(`a broken kernel log follower${why ? ` (skipped: ${why})` : ''}`, () => {
  it('fails every waiter at once with its cause, those that wait after the break too', async () => {
    const broken: string[] = []
    const follower = KmsgFollower.open(() => undefined, (w) => broken.push(w))
    try {
      // Waits far beyond this host's newest record: only the break can end them before their deadlines.
      const before = [follower.seen(() => false, 3_000), follower.caughtUp(Number.MAX_SAFE_INTEGER, 3_000)]
      before.forEach((p) => p.catch(() => undefined))
      const t0 = performance.now()
      process.kill(follower.readerPid!, 'SIGKILL')
      for (const p of before) await expect(p).rejects.toThrow(/the kernel log reader \(cat \/dev\/kmsg\) stopped: SIGKILL/)
      expect(broken).toHaveLength(1)

      // A barrier after the break: what a guest's agent does for each settle().
      const after = [follower.seen(() => false, 3_000), follower.caughtUp(Number.MAX_SAFE_INTEGER, 3_000)]
      for (const p of after) {
        const err = await p.then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(err).not.toBeInstanceOf(KernelTimeoutError)
        expect(String(err)).toMatch(/stopped: SIGKILL; was waiting for /)
      }
      expect(performance.now() - t0).toBeLessThan(2_000)
    } finally {
      await follower.close()
    }
  })
})
