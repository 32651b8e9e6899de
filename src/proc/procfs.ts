/** What /proc says about a process. All readers return undefined once the process is gone. */
import { readFileSync } from 'node:fs'

export interface ProcStat {
  pid: number
  comm: string
  /** R, S, D, Z, T, ... (proc(5)) */
  state: string
  ppid: number
  /** Process group: a `detached` child's group holds it and everything it started but did not move out. */
  pgrp: number
  /** Session: with the kernel's autogroups, what the scheduler shares the CPU between. */
  session: number
  /** PF_* bits (include/linux/sched.h): PF_KTHREAD marks a kernel thread. */
  flags: number
  /** Clock ticks after boot: with the PID, identifies one process even if the PID is reused. */
  startTime: number
  /** CPU time in user and kernel mode, clock ticks (USER_HZ, 100 on Linux). */
  utime: number
  stime: number
}

/** Parses /proc/PID/stat; comm may hold spaces and parentheses, so split at the last ')'. */
export function parseStat(text: string): ProcStat {
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  const pid = Number(text.slice(0, open).trim())
  const comm = text.slice(open + 1, close)
  const rest = text.slice(close + 2).split(' ')
  // rest[0] is field 3 (state); field N is rest[N - 3].
  return { pid, comm, state: rest[0] ?? '?', ppid: Number(rest[1]), pgrp: Number(rest[2]), session: Number(rest[3]), flags: Number(rest[6]), utime: Number(rest[11]), stime: Number(rest[12]), startTime: Number(rest[19]) }
}

function readProcFile(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8')
  } catch {
    return undefined
  }
}

export function readStat(pid: number): ProcStat | undefined {
  const text = readProcFile(pid, 'stat')
  return text === undefined ? undefined : parseStat(text)
}

/** Where a sleeping process waits in the kernel (a function name), or undefined when running or hidden. */
export function readWchan(pid: number): string | undefined {
  const w = readProcFile(pid, 'wchan')?.trim()
  return w && w !== '0' ? w : undefined
}

/** The system call a blocked process is in (/proc/PID/syscall's first field); undefined when it runs, or is gone. */
export function readSyscall(pid: number): number | undefined {
  const first = readProcFile(pid, 'syscall')?.trim().split(' ')[0]
  return first !== undefined && /^\d+$/.test(first) ? Number(first) : undefined
}

/** nanosleep(2) and clock_nanosleep(2) by number, per architecture (sleep(3) calls one of them). */
const NANOSLEEPS: Partial<Record<NodeJS.Architecture, Record<number, string>>> = {
  x64: { 35: 'nanosleep', 230: 'clock_nanosleep' },
  arm64: { 101: 'nanosleep', 115: 'clock_nanosleep' },
}

/**
 * Where a process sleeps, if it sleeps in nanosleep: the kernel function (wchan) where the kernel names
 * it, else the system call. Kernels before 5.16 built with the ORC unwinder (Debian's) say "0" for wchan.
 */
export function nanosleepOf(pid: number): string | undefined {
  const wchan = readWchan(pid)
  if (wchan !== undefined) return /nanosleep/.test(wchan) ? wchan : undefined
  const nr = readSyscall(pid)
  return nr === undefined ? undefined : NANOSLEEPS[process.arch]?.[nr]
}

export function readUid(pid: number): number | undefined {
  const m = readProcFile(pid, 'status')?.match(/^Uid:\s+(\d+)/m)
  return m ? Number(m[1]) : undefined
}

export function readOomScoreAdj(pid: number): number | undefined {
  const text = readProcFile(pid, 'oom_score_adj')
  return text === undefined ? undefined : Number(text.trim())
}

/** The process's cgroup v2 path ("0::/path" line of /proc/PID/cgroup). */
export function readCgroupPath(pid: number): string | undefined {
  return readProcFile(pid, 'cgroup')?.match(/^0::(.*)$/m)?.[1]
}

/** A process as seen once: PID plus start time, so a later PID reuse is not mistaken for it. */
export interface ProcIdentity {
  pid: number
  startTime: number
}

export type Liveness = 'alive' | 'zombie' | 'gone'

/** alive; zombie (exited, not yet reaped: dead); gone (no /proc entry, or the PID now names another process). */
export function liveness(id: ProcIdentity): Liveness {
  return livenessFrom(id, readStat(id.pid))
}

/** The same, from what /proc said of the PID (read here, or on another machine); a start time of -1 is never alive. */
export function livenessFrom(id: ProcIdentity, now: { startTime: number; state: string } | null | undefined): Liveness {
  if (id.startTime < 0 || !now || now.startTime !== id.startTime) return 'gone'
  return now.state === 'Z' || now.state === 'X' ? 'zombie' : 'alive'
}

/** Kernel release of the running kernel. */
export function kernelRelease(): string {
  return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
}
