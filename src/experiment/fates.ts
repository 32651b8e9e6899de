/**
 * Who is who, and what became of them: a process's role in the article's procedure, the OOM
 * killer's events that concern a tree, and each member's fate with the kernel's record behind it.
 * Pure functions of what the Lab saw: no machine is touched here.
 */
import { groupOomEvents, isWithin, type OomEvent } from '../kmsg/oom.js'
import { formatRecord, type KmsgRecord } from '../kmsg/record.js'
import { livenessFrom, type Liveness } from '../proc/procfs.js'
import type { ProcIdentity, ProcInfo } from '../os/os.js'

export type { Liveness }

export type Role = 'shell' | 'nohup sleep' | 'stress-ng' | 'stress-ng vm stressor' | 'stress-ng vm worker' | 'container init' | 'server' | 'worker' | 'other'

export interface Member extends ProcIdentity {
  role: Role
  /** The article's name of its cgroup, e.g. "test01/test011". */
  cgroup: string
  comm: string
  /**
   * The program it execs once started (nohup's command): the kernel's records name that one from the exec
   * on, which can come after the lab last read /proc.
   */
  execs?: string
  uid?: number
  oomScoreAdj?: number
  /** In a container's PID namespace: its init (PID 1 there), whose death ends every other process of it. */
  namespaceInit?: { pid: number; comm: string }
}

export interface Fate {
  member: Member
  liveness: Liveness
  alive: boolean
  /** Still listed in its cgroup's cgroup.procs. */
  inCgroup: boolean
  /** The kernel's "Killed process" record for this PID, formatted as dmesg prints it. */
  killRecord?: string
  /** The group kill found it already dying and skipped it ("is already exiting"): the kernel's record. */
  exitingRecord?: string
  /** Dead without a "Killed process" record of its own, and why: its PID namespace's init was killed. */
  cause?: string
}

/**
 * Why a process with no "Killed process" record of its own died: the OOM killer killed the init of its
 * PID namespace, and the kernel kills every other process of a namespace whose init exits.
 */
export function deathCause(events: readonly OomEvent[], m: Member): string | undefined {
  const init = m.namespaceInit
  if (!init || isRecordOf(m, init) || !killRecordOf(events, init)) return undefined
  return `its PID namespace ended: the OOM killer killed its init, pid ${init.pid} (${init.comm})`
}

/**
 * The role of a process found in the tree. stress-ng's own processes are told apart by their
 * parents (the shell starts stress-ng, stress-ng the vm stressor, the stressor its workers); any
 * other process, whatever its name, is "other" and shown as such. stress-ng is also the stressor's
 * parent (`stressNgPid`, as /proc says when the tree is read): a stress-ng first seen after the group
 * kill took its shell has been re-parented, and only that still ties it to the run.
 */
export function roleOf(p: { pid: number; ppid: number; comm: string }, known: { stressorPid: number | undefined; shellPids: readonly number[]; stressNgPid?: number | undefined }): Role {
  if (!p.comm.startsWith('stress-ng')) return 'other'
  if (p.pid === known.stressorPid) return 'stress-ng vm stressor'
  if (known.stressorPid !== undefined && p.ppid === known.stressorPid) return 'stress-ng vm worker'
  if (known.shellPids.includes(p.ppid) || (known.stressNgPid !== undefined && p.pid === known.stressNgPid)) return 'stress-ng'
  return 'other'
}

/**
 * The roles in a container started by a runtime, from what /proc says of its cgroup's processes: its
 * PID 1 (`init`, as the runtime or LXC reports it); the server PID 1 runs (LXC's init runs it as a child;
 * under runc and crun PID 1 is the server); the server's children, its workers; and stress-ng's own
 * processes, told apart by their parents as in the article's shell.
 */
export function containerRoles(procs: readonly ProcInfo[], init: number): { roles: Map<number, Role>; stressorPid: number | undefined } {
  const byPid = new Map(procs.map((p) => [p.pid, p]))
  const stressor = procs.find((p) => p.comm === 'stress-ng-vm' && byPid.get(p.ppid)?.comm === 'stress-ng')
  const server = procs.find((p) => p.ppid === init && p.comm === 'sh')?.pid ?? init
  const roles = new Map<number, Role>()
  for (const p of procs) {
    const role: Role =
      p.pid === init ? 'container init'
      : p.pid === server ? 'server'
      : p.comm === 'stress-ng' ? 'stress-ng'
      : p.pid === stressor?.pid ? 'stress-ng vm stressor'
      : stressor !== undefined && p.ppid === stressor.pid ? 'stress-ng vm worker'
      : p.ppid === server ? 'worker'
      : 'other'
    roles.set(p.pid, role)
  }
  return { roles, stressorPid: stressor?.pid }
}

/**
 * The processes in the tree that are not members yet, with their roles, from what /proc says of each
 * cgroup's processes (`procs`, by the article's cgroup name).
 */
export function newcomers(procs: ReadonlyMap<string, readonly ProcInfo[]>, members: readonly Member[], stressorPid: number | undefined): Member[] {
  const shellPids = members.filter((m) => m.role === 'shell').map((m) => m.pid)
  const stressNgPid = [...procs.values()].flat().find((p) => p.pid === stressorPid)?.ppid
  const found: Member[] = []
  for (const [cgroup, ps] of procs)
    for (const p of ps) {
      if (members.some((m) => m.pid === p.pid) || found.some((m) => m.pid === p.pid)) continue
      const m: Member = { pid: p.pid, startTime: p.startTime, role: roleOf(p, { stressorPid, shellPids, stressNgPid }), cgroup, comm: p.comm }
      refreshMember(m, p)
      found.push(m)
    }
  return found
}

/** Updates a live member from what /proc says now (its program, uid and oom_score_adj change across setpriv's exec). */
export function refreshMember(m: Member, now: ProcInfo | null | undefined): void {
  if (livenessFrom(m, now) !== 'alive' || !now) return
  m.comm = now.comm
  if (now.uid !== undefined) m.uid = now.uid
  if (now.oomScoreAdj !== undefined) m.oomScoreAdj = now.oomScoreAdj
}

/**
 * Whether a kernel record names this process: the same PID and the same name (task->comm, which both
 * the record and /proc print), or the name of the program it execs. A PID alone may since name another process.
 */
export function isRecordOf(m: { pid: number; comm: string; execs?: string }, k: { pid: number; comm: string }): boolean {
  return m.pid === k.pid && (m.comm === k.comm || m.execs === k.comm)
}

/**
 * The OOM killer's runs that concern a tree, matched by cgroup path or, where the kernel's rate limit
 * swallowed the header, by the PIDs the lab started; never by timing. Paths are rewritten to the
 * tree's own view: the kernel prints them from the hierarchy's root, and inside a private cgroup
 * namespace the mount shows less of it; the tree's name is unique, so a path through it is ours.
 */
export function oomEventsOf(records: readonly KmsgRecord[], tree: { name: string; kernelPath: string }, members: readonly Member[]): OomEvent[] {
  const own = (p: string | undefined) => {
    const i = p?.indexOf(`/${tree.name}`) ?? -1
    if (p === undefined || i < 0) return p
    const rest = p.slice(i + tree.name.length + 1)
    return rest === '' || rest.startsWith('/') ? tree.kernelPath + rest : p
  }
  const root = tree.kernelPath
  return groupOomEvents(records)
    .map((e) => ({ ...e, oomMemcg: own(e.oomMemcg), taskMemcg: own(e.taskMemcg), groupKill: own(e.groupKill) }))
    .filter(
      (e) =>
        isWithin(e.oomMemcg, root) ||
        isWithin(e.taskMemcg, root) ||
        isWithin(e.groupKill, root) ||
        (e.oomMemcg === undefined && e.killed.some((k) => members.some((m) => m.startTime >= 0 && isRecordOf(m, k)))),
    )
}

/** The kernel's "Killed process" record of a process (its PID and name), as dmesg prints it. */
export function killRecordOf(events: readonly OomEvent[], m: { pid: number; comm: string; execs?: string }): string | undefined {
  for (const e of events) {
    const k = e.killed.find((r) => isRecordOf(m, r))
    if (k) return formatRecord(e.records.find((r) => r.seq === k.seq)!)
  }
  return undefined
}

/** The kernel's "OOM victim N (comm) is already exiting" record of a process, as dmesg prints it. */
export function exitingRecordOf(events: readonly OomEvent[], m: { pid: number; comm: string; execs?: string }): string | undefined {
  for (const e of events) {
    const k = e.exiting.find((r) => isRecordOf(m, r))
    if (k) return formatRecord(e.records.find((r) => r.seq === k.seq)!)
  }
  return undefined
}

/**
 * Processes known only from the kernel's records (workers restarted after a kill and killed again):
 * only a victim's cgroup is printed (task_memcg); a group member's is not, so it stays unknown.
 */
export function membersFromRecords(events: readonly OomEvent[], known: readonly Member[], cgroupOf: (kernelPath: string | undefined) => string | undefined, stressorPid: number | undefined): Member[] {
  const found: Member[] = []
  for (const e of events)
    for (const k of e.killed) {
      if (known.some((m) => isRecordOf(m, k)) || found.some((m) => isRecordOf(m, k))) continue
      const cg = k.pid === e.victim?.pid ? cgroupOf(e.taskMemcg) : undefined
      const role: Role = k.pid === stressorPid ? 'stress-ng vm stressor' : k.comm === 'stress-ng' ? 'stress-ng' : k.comm === 'stress-ng-vm' ? 'stress-ng vm worker' : 'other'
      found.push({ pid: k.pid, startTime: -1, role, cgroup: cg ?? '(unknown)', comm: k.comm, ...(k.uid !== undefined && { uid: k.uid }), ...(k.oomScoreAdj !== undefined && { oomScoreAdj: k.oomScoreAdj }) })
    }
  return found
}
