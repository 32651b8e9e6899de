/**
 * A process group seen from outside: a `detached` child leads one, and its descendants stay in it. When the
 * leader exits, the rest may still be running (vitest's forks tearing down their trees), and they are not our
 * children, so their exits are seen in /proc.
 */
import { readdirSync } from 'node:fs'
import { readStat, liveness, livenessFrom, type ProcIdentity } from './procfs.js'

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

/**
 * Resolves once no process of the group is alive; or after `timeoutMs`, with those still alive. The group is
 * listed from /proc once, then its members are looked at every 10 ms, and it is listed again before it is called empty.
 */
export function groupEnded(pgid: number, timeoutMs: number): Promise<ProcIdentity[]> {
  return new Promise((resolve) => {
    const deadline = performance.now() + timeoutMs
    let members = groupMembers(pgid)
    const check = () => {
      members = members.filter((p) => liveness(p) === 'alive')
      if (members.length === 0) members = groupMembers(pgid)
      if (members.length === 0 || performance.now() >= deadline) resolve(members)
      else setTimeout(check, 10)
    }
    check()
  })
}
