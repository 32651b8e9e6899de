/**
 * The OOM killer's kernel log lines, in the formats printed since 4.19 (mm/oom_kill.c, mm/memcontrol.c):
 *   4.19-5.0  "Memory cgroup out of memory: Kill process N (comm) score S or sacrifice child"
 *             "Killed process N (comm) total-vm:..kB, anon-rss:..kB, file-rss:..kB, shmem-rss:..kB"
 *             "Task in /a/b killed as a result of limit of /a"
 *   5.0+      "oom-kill:constraint=...,oom_memcg=/a,task_memcg=/a/b,task=comm,pid=N,uid=U"
 *             (CONSTRAINT_NONE for a memcg OOM until 5.2, 432b1de0de02)
 *   5.1+      "Memory cgroup out of memory: Killed process N (comm) total-vm:..." (reason prefix)
 *   5.4+      "... UID:U pgtables:..kB oom_score_adj:A" appended (70cb6d267790)
 *   all       "Tasks in /a are going to be killed due to memory.oom.group set"
 *   4.19+     "Memory cgroup out of memory: OOM victim N (comm) is already exiting. Skip killing the task"
 *             (a group member already dying when the group kill reached it: e.g. killed with its PID
 *             namespace, whose init the group kill took first)
 * 4.19's lines are as a 4.19.304 printed them (test/fixtures/oom/4.19.304); the parser needs no version:
 * it reads whichever lines a kernel prints.
 */
import type { KmsgRecord } from './record.js'

export interface InvokedLine {
  kind: 'invoked'
  comm: string
  oomScoreAdj?: number
}
export interface KilledLine {
  kind: 'killed'
  /** "Memory cgroup out of memory", "Out of memory", or undefined on kernels that print no reason. */
  reason?: string
  pid: number
  comm: string
  uid?: number
  oomScoreAdj?: number
}
export interface SacrificeLine {
  kind: 'sacrifice'
  pid: number
  comm: string
  score: number
}
export interface SummaryLine {
  kind: 'summary'
  constraint: string
  oomMemcg?: string
  taskMemcg?: string
  task: string
  pid: number
  uid?: number
}
export interface GroupLine {
  kind: 'group'
  cgroup: string
}
export interface TaskInLine {
  kind: 'task-in'
  taskMemcg: string
  oomMemcg: string
}
export interface ExitingLine {
  kind: 'exiting'
  pid: number
  comm: string
}
export type OomLine = InvokedLine | KilledLine | SacrificeLine | SummaryLine | GroupLine | TaskInLine | ExitingLine

const INVOKED = /^(.*) invoked oom-killer: .*?oom_score_adj=(-?\d+)/
const KILLED =
  /^(?:(.+?): )?Killed process (\d+) \((.*)\) total-vm:\d+kB, anon-rss:\d+kB, file-rss:\d+kB, shmem-rss:\d+kB(?:,? UID:(\d+))?(?:.*oom_score_adj:(-?\d+))?/
const SACRIFICE = /Kill process (\d+) \((.*)\) score (\d+) or sacrifice child/
const SUMMARY = /^oom-kill:(.*)$/
const GROUP = /^Tasks in (\S+) are going to be killed due to memory\.oom\.group set/
const TASK_IN = /^Task in (\S+) killed as a result of limit of (\S+)/
const EXITING = /OOM victim (\d+) \((.*)\) is already exiting\. Skip killing the task/

/** Parses one kernel log message; undefined when it is not one of the OOM killer's lines. */
export function parseOomLine(message: string): OomLine | undefined {
  let m: RegExpMatchArray | null
  if ((m = message.match(KILLED))) {
    return {
      kind: 'killed',
      ...(m[1] !== undefined && { reason: m[1] }),
      pid: Number(m[2]),
      comm: m[3]!,
      ...(m[4] !== undefined && { uid: Number(m[4]) }),
      ...(m[5] !== undefined && { oomScoreAdj: Number(m[5]) }),
    }
  }
  if ((m = message.match(SACRIFICE))) return { kind: 'sacrifice', pid: Number(m[1]), comm: m[2]!, score: Number(m[3]) }
  if ((m = message.match(GROUP))) return { kind: 'group', cgroup: m[1]! }
  if ((m = message.match(SUMMARY))) return parseSummary(m[1]!)
  if ((m = message.match(TASK_IN))) return { kind: 'task-in', taskMemcg: m[1]!, oomMemcg: m[2]! }
  if ((m = message.match(INVOKED))) return { kind: 'invoked', comm: m[1]!, oomScoreAdj: Number(m[2]) }
  if ((m = message.match(EXITING))) return { kind: 'exiting', pid: Number(m[1]), comm: m[2]! }
  return undefined
}

function parseSummary(body: string): SummaryLine {
  const fields = new Map<string, string>()
  for (const part of body.split(',')) {
    const eq = part.indexOf('=')
    if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1))
  }
  const uid = fields.get('uid')
  return {
    kind: 'summary',
    constraint: fields.get('constraint') ?? '?',
    ...(fields.has('oom_memcg') && { oomMemcg: fields.get('oom_memcg')! }),
    ...(fields.has('task_memcg') && { taskMemcg: fields.get('task_memcg')! }),
    task: fields.get('task') ?? '?',
    pid: Number(fields.get('pid')),
    ...(uid !== undefined && { uid: Number(uid) }),
  }
}

/** One run of the OOM killer: from "invoked oom-killer" to the last kill it made. */
export interface OomEvent {
  /** The cgroup whose limit was hit (from the oom-kill: or Task in line). */
  oomMemcg?: string
  /** The victim's cgroup. */
  taskMemcg?: string
  victim?: { pid: number; comm: string }
  /** The cgroup named by "Tasks in ... are going to be killed due to memory.oom.group set". */
  groupKill?: string
  /** Every "Killed process" record, in order (the victim appears again in a group kill). */
  killed: (KilledLine & { seq: number; usec: number })[]
  /** Members the group kill found already dying ("is already exiting. Skip killing the task"). */
  exiting: (ExitingLine & { seq: number; usec: number })[]
  /** The records this event consists of (OOM lines only, not the memory dump). */
  records: KmsgRecord[]
}

/**
 * Groups OOM lines into events. The OOM killer prints under oom_lock, so the lines of one event
 * do not interleave with another event's; an event starts with "invoked oom-killer" (or, if the
 * reader joined late, with the first OOM line seen).
 */
export function groupOomEvents(records: readonly KmsgRecord[]): OomEvent[] {
  const events: OomEvent[] = []
  let cur: OomEvent | undefined
  for (const rec of records) {
    const line = parseOomLine(rec.message)
    if (!line) continue
    // The header lines are rate-limited (10 per 5 s) but "Killed process" is not: a second kill
    // with no group kill in between is another event whose header was suppressed.
    const starts =
      line.kind === 'invoked' ||
      !cur ||
      ((line.kind === 'summary' || line.kind === 'sacrifice') && cur.victim !== undefined) ||
      (line.kind === 'killed' && cur.killed.length > 0 && cur.groupKill === undefined)
    if (starts || !cur) {
      cur = { killed: [], exiting: [], records: [] }
      events.push(cur)
    }
    cur.records.push(rec)
    switch (line.kind) {
      case 'summary':
        if (line.oomMemcg !== undefined) cur.oomMemcg = line.oomMemcg
        if (line.taskMemcg !== undefined) cur.taskMemcg = line.taskMemcg
        cur.victim = { pid: line.pid, comm: line.task }
        break
      case 'task-in':
        cur.oomMemcg = line.oomMemcg
        cur.taskMemcg = line.taskMemcg
        break
      case 'sacrifice':
        cur.victim = { pid: line.pid, comm: line.comm }
        break
      case 'group':
        cur.groupKill = line.cgroup
        break
      case 'killed':
        cur.victim ??= { pid: line.pid, comm: line.comm }
        cur.killed.push({ ...line, seq: rec.seq, usec: rec.usec })
        break
      case 'exiting':
        cur.exiting.push({ ...line, seq: rec.seq, usec: rec.usec })
        break
      case 'invoked':
        break
    }
  }
  return events
}

/** Whether a kernel-printed cgroup path is `root` or below it. */
export function isWithin(path: string | undefined, root: string): boolean {
  return path !== undefined && (path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`))
}
