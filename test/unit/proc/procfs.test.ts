/** The one /proc/PID/stat parser (src/proc/procfs.ts), on lines the kernel wrote. */
import { describe, it, expect } from 'vitest'
import { startChild } from '../../helpers/child.js'
import { parseStat, readStat } from '../../../src/proc/procfs.js'

describe('/proc/PID/stat', () => {
  it('parses a line read in a 5.10.0-32 guest: stress-ng\'s vm worker asleep holding its memory', () => {
    // Read from the guest by a spec of ours (limit 400M, stress-ng --vm-bytes 256M --vm-hang 0), 2026-12-07.
    const line = '100 (stress-ng-vm) S 99 0 0 0 -1 1077936192 65559 0 0 0 19 166 0 0 20 0 1 0 3479 330817536 66001 18446744073709551615 93993574891520 93993580253197 140736303922608 0 0 0 0 137366016 595648687 0 0 0 17 0 0 0 0 0 0 93993583005480 93993583325784 93993608921088 140736303931142 140736303931190 140736303931190 140736303931365 0\n'
    expect(parseStat(line)).toEqual({ pid: 100, comm: 'stress-ng-vm', state: 'S', ppid: 99, pgrp: 0, session: 0, flags: 1077936192, utime: 19, stime: 166, startTime: 3479 })
  })

  it('reads a process whose name holds spaces and parentheses', async () => {
    // The shell renames itself (task->comm) and waits on its stdin: the name is the kernel's, read back through /proc.
    const child = startChild('/bin/sh', ['-c', 'printf "a) (b c" > /proc/$$/comm; echo renamed; read line'], { stdin: 'pipe' })
    try {
      await child.line(/^renamed$/)
      const st = readStat(child.pid)!
      expect(st.pid).toBe(child.pid)
      expect(st.ppid).toBe(process.pid)
      expect(st.comm).toBe('a) (b c')
      expect(st.startTime).toBeGreaterThan(0)
    } finally {
      child.kill('SIGKILL')
    }
  })
})
