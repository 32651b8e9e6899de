/**
 * Processes stopped together on an interrupt, seen from outside. A `detached` child leads a process group,
 * and its descendants stay in it; vitest run in this process has its forks in this process's own group,
 * beside whoever started it, so there the members are this process's descendants in its group. When the
 * leader or a fork exits, what it started may still be running (its trees being torn down), and those are
 * not our children, so their exits are seen in /proc.
 */
import { readdirSync } from 'node:fs'
import { readStat, liveness, livenessFrom, type ProcIdentity, type ProcStat } from './procfs.js'

/** Every live process (zombies are dead: they only wait for their parent to reap them). */
function liveProcesses(): ProcStat[] {
  const found: ProcStat[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    const st = readStat(Number(d))
    if (st && livenessFrom(st, st) === 'alive') found.push(st)
  }
  return found
}

const identity = (st: ProcStat): ProcIdentity => ({ pid: st.pid, startTime: st.startTime })

/** The live processes of a process group. */
export function groupMembers(pgid: number): ProcIdentity[] {
  return liveProcesses().filter((st) => st.pgrp === pgid).map(identity)
}

/** The live descendants of `pid` in its own process group (a process that started a session of its own is not one). */
export function groupDescendants(pid = process.pid): ProcIdentity[] {
  const all = liveProcesses()
  const pgrp = readStat(pid)?.pgrp
  const children = new Map<number, ProcStat[]>()
  for (const st of all) children.set(st.ppid, [...(children.get(st.ppid) ?? []), st])
  const found: ProcIdentity[] = []
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      if (c.pgrp === pgrp) found.push(identity(c))
      walk(c.pid)
    }
  }
  walk(pid)
  return found
}

export function signalAll(procs: readonly ProcIdentity[], sig: NodeJS.Signals): void {
  for (const p of procs)
    try {
      // Checked just before: a PID that now names another process is left alone.
      if (liveness(p) === 'alive') process.kill(p.pid, sig)
    } catch {
      /* gone meanwhile */
    }
}

/**
 * Resolves once none of `members`, nor any of what `list` then finds, is alive; or after `timeoutMs`, with those
 * still alive. Members are looked at every 10 ms, and `list` is asked again before the set is called empty.
 */
function ended(members: ProcIdentity[], list: () => ProcIdentity[], timeoutMs: number): Promise<ProcIdentity[]> {
  return new Promise((resolve) => {
    const deadline = performance.now() + timeoutMs
    const check = () => {
      members = members.filter((p) => liveness(p) === 'alive')
      if (members.length === 0) members = list()
      if (members.length === 0 || performance.now() >= deadline) resolve(members)
      else setTimeout(check, 10)
    }
    check()
  })
}

/** Once no process of the group is alive; or after `timeoutMs`, with those still alive. */
export function groupEnded(pgid: number, timeoutMs: number): Promise<ProcIdentity[]> {
  return ended(groupMembers(pgid), () => groupMembers(pgid), timeoutMs)
}

/**
 * Once none of `members` (this process's group descendants when signalled, some since orphaned) and none of
 * its group descendants now is alive; or after `timeoutMs`, with those still alive.
 */
export function descendantsEnded(members: readonly ProcIdentity[], timeoutMs: number, pid = process.pid): Promise<ProcIdentity[]> {
  return ended([...members], () => groupDescendants(pid), timeoutMs)
}
