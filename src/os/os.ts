/**
 * The seam between the Lab and the machine it acts on. Everything the experiments need from an OS
 * goes through here: cgroupfs reads and writes, mkdir and rmdir, /proc, starting a program inside a
 * cgroup as a uid/gid, signals, process exits, waits on kernfs events, and the kernel log.
 *
 * Two implementations: LocalOs acts on the machine this process runs on (native runs, and the agent
 * inside a guest); RemoteOs forwards each call to that agent over the guest's channel (a virtio-serial
 * port, or the second UART). Every argument and result is plain JSON, and each call is one round trip:
 * a Lab step batches its file operations into one `run`, and waits happen on the machine, their
 * outcome pushed back once.
 */
import type { KmsgRecord } from '../kmsg/record.js'
import type { Marker } from '../kmsg/reader.js'

export type { Marker }
export type { ProcIdentity } from '../proc/procfs.js'
export type { Credentials } from '../proc/spawn.js'
export type { ExecSpec, ExecResult } from '../proc/exec.js'
import type { ProcIdentity } from '../proc/procfs.js'
import type { Credentials } from '../proc/spawn.js'
import type { ExecSpec, ExecResult } from '../proc/exec.js'

export interface Cgroup2Mount {
  mountPoint: string
  /** The mounted directory's path inside the hierarchy ("/" unless in a cgroup namespace). */
  root: string
  /** Super options, e.g. "rw,nsdelegate,memory_localevents". */
  options: string
}

/** What a machine is: read once per Lab. */
export interface OsFacts {
  release: string
  /** /proc/version */
  version: string
  cmdline: string
  uid: number
  cgroup2?: Cgroup2Mount
  /** An oomlab guest, whose kernel log is ours to write markers into (never a host's). */
  guest: boolean
  /** Active swap devices (/proc/swaps). */
  swapDevices: number
  /** The machine's CLOCK_MONOTONIC (µs) when it answered: relates its clock to the caller's. */
  monotonicUs: number
  /** CPU time (ms) so far: the process serving this Os (the agent, in a guest), and all of the machine's CPUs busy. */
  cpu: { serverMs: number; machineBusyMs: number }
}

/** One file-system operation of a batch. */
export type Op =
  | { op: 'read'; path: string }
  | { op: 'write'; path: string; data: string }
  | { op: 'exists'; path: string }
  | { op: 'mkdir'; path: string }
  /** ENOENT is success: the directory is gone either way. */
  | { op: 'rmdir'; path: string }
  /** What /proc says of a process; null when it is gone. */
  | { op: 'proc'; pid: number }
  /** What /proc says of each process in a cgroup's cgroup.procs (those still there when read). */
  | { op: 'procs'; path: string }

export interface ProcInfo {
  pid: number
  comm: string
  state: string
  ppid: number
  startTime: number
  uid?: number
  oomScoreAdj?: number
}

export type OpValue = string | boolean | ProcInfo | ProcInfo[] | null | undefined
export type OpResult = { ok: true; value?: OpValue } | { ok: false; error: string; code?: string }

export interface SpawnSpec {
  argv: string[]
  /** Absolute directory of the cgroup the process joins before its program runs. */
  cgroup: string
  user: Credentials
  cwd: string
  /** A pipe to type into (the article's shell); otherwise /dev/null. */
  stdin: 'pipe' | 'ignore'
  timeoutMs: number
}

export interface Spawned {
  /** The machine's handle for the process (its PID as a string). */
  id: string
  pid: number
  startTime: number
}

/** A tree opened for one experiment: a unique cgroup with memory delegated, and a working folder. */
export interface Tree {
  name: string
  /** Absolute directory on cgroupfs. */
  dir: string
  /** The path the kernel prints in its log, from the hierarchy's root. */
  kernelPath: string
  /** A folder owned by the workload user, for its working directory. */
  cwd: string
  /** Stale trees and temp dirs of dead runs that were removed on the way, one line each. */
  reaped: string[]
}

export interface TreeOptions {
  /** Where the tree goes (default: the cgroup2 mount). */
  parent?: string
  user: Credentials
  /**
   * The random part of the tree's name, drawn by the caller: every guest restored from one snapshot
   * has the same random state, so what it draws itself is the same in each.
   */
  nonce: string
}

/** A keyed file (memory.events, cgroup.events) whose key must reach a value. */
export interface KeyedCondition {
  path: string
  key: string
  cmp: 'eq' | 'ge'
  value: number
  /** Names what is awaited, for the timeout's message. */
  expected: string
}

/** A file whose text must come to match a pattern: a log a program appends to (a container's output). */
export interface TextCondition {
  path: string
  /** A RegExp source, looked for after the first `since` characters. */
  pattern: string
  since: number
  /** Names what is awaited, for the timeout's message. */
  expected: string
}

/** What ends a workload's allocation: see Os.waitAllocationEnd. */
export interface AllocationWatch {
  /** The process whose children allocate: stress-ng's vm stressor. */
  parent: ProcIdentity
  /** The tree's cgroup directories, where those children are looked for. */
  cgroups: string[]
  /** memory.events of each cgroup with a limit, and its "oom" count before the workload ran. */
  limits: { path: string; oomBefore: number }[]
}

export type AllocationEnd =
  /** A limit's "oom" count moved: the OOM killer ran. */
  | { by: 'oom' }
  /** A child sleeps in nanosleep holding its memory (stress-ng's --vm-hang): no OOM kill will come from it. */
  | { by: 'asleep'; pid: number; comm: string; /** The kernel function (wchan) or system call it sleeps in. */ wchan: string }
  /** The allocating process is gone (killed with its group). */
  | { by: 'parent gone' }

export interface MachineStats {
  kind: 'local' | 'guest'
  /** A guest's accelerator: KVM, or QEMU's emulation (TCG). */
  accel?: 'kvm' | 'tcg'
  /** How a guest's agent is reached: a virtio-serial port, or the second UART. */
  channel?: 'serial' | 'virtio'
  /** Calls across the channel (one round trip each). */
  roundTrips?: number
  /** Host ms spent waiting on each kind of call, answer included. */
  callMs?: Record<string, number>
  /** Host ms from the guest's restore to its agent answering (a guest restored ahead: its load and its resume). */
  restoreMs?: number
  /** Host ms the experiment waited for its guest (less than restoreMs for a guest restored ahead, while vitest started). */
  waitedMs?: number
  /** The guest was restored ahead by the CLI and claimed by this experiment (src/vm/ahead.ts). */
  restoredAhead?: boolean
  /** Host CPU ms its QEMU used so far (restore included): what emulating the guest costs the host. */
  qemuCpuMs?: number
  /** CPU ms the experiment cost on the machine: the agent's (or this process's) own, and the machine's in all. */
  cpu?: { serverMs: number; machineBusyMs: number }
  /** A guest's console: its last lines, and a kernel incident (BUG, panic, lockup) if one began. Kept in the evidence of a failed experiment. */
  console?: { tail: string[]; incident?: string[] }
}

export interface Os extends AsyncDisposable {
  /** "local" or "guest <release>": for messages. */
  readonly name: string
  /** What the evidence says of the machine: how it was reached, and what that cost. */
  stats(): MachineStats
  /**
   * Thrown away whole after the experiment (a restored guest): its tree needs no teardown. A machine
   * that is not (this host) gets every process killed and every cgroup removed.
   */
  readonly disposable: boolean
  facts(): Promise<OsFacts>
  /** The machine's CLOCK_MONOTONIC (µs): a light call, to relate its clock to the caller's. */
  clock(): Promise<number>
  /** Runs every operation, in order, in one round trip; each has its own result. */
  run(ops: readonly Op[]): Promise<OpResult[]>

  /** Removes dead runs' leftovers under `parent`, then creates a tree named after this machine's caller. */
  openTree(o: TreeOptions): Promise<Tree>
  /** Kills everything in the tree, waits until it is empty, removes it deepest first and its folder. */
  closeTree(tree: Tree): Promise<void>

  /** Starts `argv` inside its cgroup as the user; resolves once the process has joined. */
  spawn(spec: SpawnSpec): Promise<Spawned>
  /** Types a line into a spawned process's stdin. */
  type(id: string, line: string): Promise<void>
  /** A mark in a spawned process's output: waitOutput looks only after it. */
  outputMark(id: string): Promise<number>
  /** The groups of the first match of `pattern` (a RegExp source) after `since`. */
  waitOutput(id: string, pattern: string, since: number, expected: string, timeoutMs: number): Promise<string[]>
  output(id: string): Promise<string>
  /** Resolves when each process has exited (zombie or gone); fails naming those still running. */
  waitExit(procs: readonly (ProcIdentity & { label: string })[], timeoutMs: number): Promise<void>
  /**
   * Runs a program to its end as the machine's own user (root), its output returned or appended to a
   * file: a container runtime's commands. A program that does not end in time is killed, and the call fails.
   */
  exec(spec: ExecSpec): Promise<ExecResult>
  /** Writes -1000 (or `adj`) to /proc/PID/oom_score_adj. */
  setOomScoreAdj(pid: number, adj: number): Promise<void>

  /**
   * Resolves when a workload's allocation has ended: the OOM killer ran in one of its limits, or an
   * allocating child sleeps in nanosleep holding its memory (stress-ng's --vm-hang), or the allocator is gone.
   */
  waitAllocationEnd(w: AllocationWatch, timeoutMs: number): Promise<AllocationEnd>

  /** Waits until a file's text matches (inotify, as for keyed files); resolves with the match's groups and the text's length then. */
  waitText(c: TextCondition, timeoutMs: number): Promise<{ groups: string[]; length: number }>

  /** Waits for a keyed file's condition; resolves with its values and the machine's clock (µs) when seen. */
  waitKeyed(c: KeyedCondition, timeoutMs: number): Promise<{ values: Record<string, number>; atUs: number }>

  /**
   * Follows the kernel log from now on: every later record goes to `onRecords`, in order; `onBroken`
   * says why the records stopped coming. Returns the cursor. One follower per machine.
   */
  followKernelLog(onRecords: (records: KmsgRecord[]) => void, onBroken?: (why: string) => void): Promise<number>
  /**
   * The newest sequence number in the kernel log now; resolves only once every record up to it has
   * been given to the follower: after it, the follower's view has caught up with this moment.
   */
  kernelLogBarrier(): Promise<number>
  /** Writes a record into the machine's kernel log (guests only). */
  kernelLogMark(text: string): Promise<Marker>

  /** Starts the kernel's cgroup_notify_populated tracepoint (guests, bench only); false where missing. */
  tracePopulated(on: boolean): Promise<boolean>
  /** The trace's text (see kmsg/tracefs.ts). */
  readTrace(): Promise<string>

  dispose(): Promise<void>
}

/** The value of a successful result, or an Error that names the operation. */
export function valueOf(op: Op, r: OpResult | undefined): OpValue {
  if (!r) throw new Error(`${op.op} ${'path' in op ? op.path : op.pid}: no answer`)
  if (!r.ok) throw new OsError(op, r.error, r.code)
  return r.value
}

/** A failed operation on the machine: what it was, on which file, and the machine's reason. */
export class OsError extends Error {
  override readonly name = 'OsError'
  constructor(
    readonly op: Op,
    /** The machine's own words (an errno code, or the message of what failed). */
    readonly reason: string,
    readonly code?: string,
  ) {
    super(`${describeOp(op)}: ${reason}`)
  }
}

export function describeOp(op: Op): string {
  switch (op.op) {
    case 'write':
      return `write "${op.data}" to ${op.path}`
    case 'proc':
      return `read /proc/${op.pid}`
    default:
      return `${op.op} ${op.path}`
  }
}
