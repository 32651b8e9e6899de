/**
 * Names that say who made a thing: a run's cgroup trees, temp dirs and systemd scopes are named after
 * the process that owns them, so a later run can tell a dead owner's leftovers from a live run's.
 */
import { readlinkSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { readStat, liveness } from './procfs.js'
import { UserError } from '../util/errors.js'

/**
 * Who owns a run's tree: a process, told apart from a later one with its PID by its start time, in a
 * PID namespace (another container's run sharing this cgroupfs has PIDs we cannot check).
 */
export interface TreeOwner {
  pid: number
  startTime: number
  pidns: number
}

export function ownerOf(pid: number): TreeOwner | undefined {
  const stat = readStat(pid)
  const ns = readlinkSync(`/proc/${pid}/ns/pid`).match(/\[(\d+)\]/)?.[1]
  return stat && ns ? { pid, startTime: stat.startTime, pidns: Number(ns) } : undefined
}

/** This process as a tree owner; /proc must be this PID namespace's, or PIDs there mean other processes. */
export function selfOwner(): TreeOwner {
  if (readlinkSync('/proc/self') !== String(process.pid))
    throw new UserError(`/proc is not this PID namespace's (/proc/self is not ${process.pid}): mount the namespace's own /proc`)
  return ownerOf(process.pid)!
}

/** `oomlab-<pid>-<start time>-<pid namespace>-<random>`, the numbers but the PID in base 36. */
export function treeName(o: TreeOwner, random = randomBytes(3).toString('hex')): string {
  return `oomlab-${o.pid}-${o.startTime.toString(36)}-${o.pidns.toString(36)}-${random}`
}

export function parseTreeName(name: string): TreeOwner | undefined {
  const m = name.match(/^oomlab-(\d+)-([0-9a-z]+)-([0-9a-z]+)-[0-9a-f]{6}$/)
  return m ? { pid: Number(m[1]), startTime: parseInt(m[2]!, 36), pidns: parseInt(m[3]!, 36) } : undefined
}

/**
 * Whether the owner is gone: no process with its PID, a later one with another start time, or a zombie (killed,
 * not yet reaped by its parent: it will never tear its tree down).
 */
export function ownerIsGone(o: TreeOwner): boolean {
  return liveness(o) !== 'alive'
}
