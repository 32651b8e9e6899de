/**
 * A process group seen from outside: a `detached` child leads one, and its descendants stay in it. When the
 * leader exits, the rest may still be running (vitest's forks tearing down their trees), and they are not our
 * children, so their exits are seen in /proc.
 */
import { readdirSync } from 'node:fs'
import { readStat, livenessFrom, type ProcIdentity } from './procfs.js'

/** The live processes of a process group (zombies are dead: they only wait for their parent to reap them). */
export function groupMembers(pgid: number): ProcIdentity[] {
  const found: ProcIdentity[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    const st = readStat(Number(d))
    if (st?.pgrp === pgid && livenessFrom(st, st) === 'alive') found.push({ pid: st.pid, startTime: st.startTime })
  }
  return found
}

/** Resolves once no process of the group is alive, looked at every 10 ms; or after `timeoutMs`, with those still alive. */
export function groupEnded(pgid: number, timeoutMs: number): Promise<ProcIdentity[]> {
  return new Promise((resolve) => {
    const deadline = performance.now() + timeoutMs
    const check = () => {
      const left = groupMembers(pgid)
      if (left.length === 0 || performance.now() >= deadline) resolve(left)
      else setTimeout(check, 10)
    }
    check()
  })
}
