/**
 * How the teardown names a process SIGKILL did not end, read from this host's own /proc (the guest
 * test in guest-faults.test.ts moves a kernel thread into a tree and checks the whole message).
 */
import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { execa } from 'execa'
import { describeProcess } from '../../../src/os/kill.js'
import { readStat } from '../../../src/proc/procfs.js'
import { until } from '../../helpers/poll.js'

const kthreadd = (() => {
  try {
    return readFileSync('/proc/2/comm', 'utf8').trim() === 'kthreadd'
  } catch {
    return false
  }
})()

describe('describeProcess', () => {
  it.skipIf(!kthreadd)('says a kernel thread is one (pid 2, kthreadd, on this host)', () => {
    expect(describeProcess(2)).toBe('pid 2 (kthreadd): a kernel thread, which no signal ends')
  })

  it('gives a user process its state', async () => {
    const sleep = execa('sleep', ['30'])
    try {
      process.kill(sleep.pid!, 'SIGSTOP')
      await until(`pid ${sleep.pid} stopped`, () => /^[Tt]$/.test(readStat(sleep.pid!)?.state ?? ''), { timeoutMs: 1000, everyMs: 10 })
      expect(describeProcess(sleep.pid!)).toMatch(new RegExp(`^pid ${sleep.pid} \\(sleep\\): state [Tt], stopped`))
    } finally {
      sleep.kill('SIGKILL')
      await sleep.catch(() => undefined)
    }
    expect(describeProcess(sleep.pid!)).toBe(`pid ${sleep.pid}: gone meanwhile`)
  })
})
