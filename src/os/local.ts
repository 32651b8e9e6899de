/**
 * The Os of the machine this process runs on: native runs, and the agent inside a guest. File
 * operations are synchronous: cgroupfs and /proc answer from memory, and a trip through libuv's
 * thread pool costs more than the read under emulation.
 */
import { readFileSync, writeFileSync, existsSync, mkdirSync, rmdirSync, chownSync } from 'node:fs'
import { join, relative } from 'node:path'
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise'
import { cgMount, cgCheckParent, cgControllers, cgCreate, cgEnableControllers, parseKeyed, parsePids } from '../cgroup/cgroupfs.js'
import { waitForFile } from '../cgroup/wait.js'
import { monotonicUs, writeMarker } from '../kmsg/reader.js'
import { currentSeq, KmsgFollower } from '../kmsg/follower.js'
import { PopulatedTrace } from '../kmsg/tracefs.js'
import { waitAllocationEnd } from './allocation.js'
import { readStat, readUid, readOomScoreAdj, liveness } from '../proc/procfs.js'
import { startInCgroup, type Workload } from '../proc/spawn.js'
import { execProgram, type ExecSpec, type ExecResult } from '../proc/exec.js'
import { selfOwner, treeName } from '../proc/owner.js'
import { KernelTimeoutError, UserError, Unsupported } from '../util/errors.js'
import { killTree, killAndRemoveSync, reapStaleTrees, subtreeDirs, trackTree, untrackTree, installTeardownHandlers, WORKDIR_PREFIX } from './kill.js'
import type { KmsgRecord } from '../kmsg/record.js'
import { valueOf, type MachineStats, type Os, type OsFacts, type Op, type OpResult, type OpValue, type ProcInfo, type SpawnSpec, type Spawned, type Tree, type TreeOptions, type KeyedCondition, type TextCondition, type ProcIdentity, type Marker, type AllocationWatch, type AllocationEnd } from './os.js'

/** Present only in an oomlab guest (see vm/image/recipes.ts): its kernel log is ours to write to. */
export const GUEST_MARK = '/etc/oomlab-guest'

/** How long teardown waits for the kernel to empty a tree. */
const TEARDOWN_MS = 20_000

/** Time all CPUs spent busy since boot (/proc/stat: user, nice, system, irq, softirq, steal), in ms. */
function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f
  // USER_HZ is 100 on every Linux ABI.
  return (user + nice + system + irq + softirq + steal) * 10
}

export function procInfo(pid: number): ProcInfo | null {
  const stat = readStat(pid)
  if (!stat) return null
  const uid = readUid(pid)
  const adj = readOomScoreAdj(pid)
  return { pid, comm: stat.comm, state: stat.state, ppid: stat.ppid, startTime: stat.startTime, ...(uid !== undefined && { uid }), ...(adj !== undefined && { oomScoreAdj: adj }) }
}

function runOp(op: Op): OpValue {
  switch (op.op) {
    case 'read':
      return readFileSync(op.path, 'utf8')
    case 'write':
      writeFileSync(op.path, op.data)
      return undefined
    case 'exists':
      return existsSync(op.path)
    case 'mkdir':
      mkdirSync(op.path)
      return undefined
    case 'rmdir':
      try {
        rmdirSync(op.path)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
      return undefined
    case 'proc':
      return procInfo(op.pid)
    case 'procs':
      return parsePids(readFileSync(join(op.path, 'cgroup.procs'), 'utf8'))
        .map(procInfo)
        .filter((p): p is ProcInfo => p !== null)
  }
}

/** One operation's result: its value, or what failed and why (the errno code when there is one). */
function runCaught(op: Op): OpResult {
  try {
    return { ok: true, value: runOp(op) }
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return { ok: false, error: e.code ? `${e.code}` : String(e.message), ...(e.code && { code: e.code }) }
  }
}

/** Runs one operation; a failure is an OsError naming it, which keeps its fields across the wire. */
function runChecked(op: Op): OpValue {
  return valueOf(op, runCaught(op))
}

export class LocalOs implements Os {
  readonly name = 'local'
  readonly disposable = false
  stats(): MachineStats {
    return { kind: 'local' }
  }
  private readonly workloads = new Map<string, Workload>()
  private readonly trees = new Map<string, { tree: Tree; workdir: DirectoryResult; workloads: Set<string> }>()
  private follower: KmsgFollower | undefined
  private trace: PopulatedTrace | undefined

  constructor() {
    installTeardownHandlers()
  }

  async facts(): Promise<OsFacts> {
    const mount = cgMount()
    const cpu = process.cpuUsage()
    return {
      release: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
      version: readFileSync('/proc/version', 'utf8').trim(),
      cmdline: readFileSync('/proc/cmdline', 'utf8').trim(),
      uid: process.getuid?.() ?? -1,
      ...(mount && { cgroup2: { mountPoint: mount.mountPoint, root: mount.root, options: mount.superOptions } }),
      guest: existsSync(GUEST_MARK),
      swapDevices: Math.max(0, readFileSync('/proc/swaps', 'utf8').trim().split('\n').length - 1),
      monotonicUs: monotonicUs(),
      cpu: { serverMs: Math.round((cpu.user + cpu.system) / 1000), machineBusyMs: machineBusyMs() },
    }
  }

  async clock(): Promise<number> {
    return monotonicUs()
  }

  async run(ops: readonly Op[]): Promise<OpResult[]> {
    return ops.map(runCaught)
  }

  async openTree(o: TreeOptions): Promise<Tree> {
    const mount = cgMount()
    if (!mount) throw new UserError('no cgroup2 filesystem is mounted; run `npm test` to use the VM')
    if (process.getuid?.() !== 0) throw new UserError('creating cgroups needs root; run with sudo')
    const parent = cgCheckParent(o.parent ?? mount.mountPoint, mount.mountPoint)
    if (!(await cgControllers(parent).catch((): string[] => [])).includes('memory')) {
      const cmdline = readFileSync('/proc/cmdline', 'utf8')
      const release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
      throw new Unsupported(`the memory controller is not available in ${parent} (kernel ${release}${/\bcgroup_disable=memory\b/.test(cmdline) ? ', booted with cgroup_disable=memory' : ''})`)
    }
    const reaped: string[] = []
    reapStaleTrees(parent, (line) => {
      reaped.push(line)
      process.stderr.write(`oomlab: ${line}\n`)
    })
    const name = treeName(selfOwner(), o.nonce)
    const dir = join(parent, name)
    // Named after the tree: a run killed too hard to clean up leaves both, and the next run finds both.
    const workdir = await tmpDir({ prefix: `${WORKDIR_PREFIX}${name}`, unsafeCleanup: true })
    const cwd = join(workdir.path, 'work')
    try {
      // The temp dir stays root's (the reaper removes only root's dirs: nobody else can make one); the
      // workload works in a folder of its own inside.
      mkdirSync(cwd)
      chownSync(cwd, o.user.uid, o.user.gid)
      await cgCreate(dir)
    } catch (err) {
      await workdir.cleanup()
      throw err
    }
    trackTree(dir, workdir.path)
    const tree: Tree = { name, dir, kernelPath: join(mount.root, relative(mount.mountPoint, parent), name), cwd, reaped }
    this.trees.set(dir, { tree, workdir, workloads: new Set() })
    try {
      await cgEnableControllers(dir, ['memory'])
    } catch (err) {
      await this.closeTree(tree)
      throw err
    }
    return tree
  }

  async closeTree(tree: Tree): Promise<void> {
    const open = this.trees.get(tree.dir)
    if (!open) return
    this.trees.delete(tree.dir)
    try {
      await killTree(tree.dir, TEARDOWN_MS)
      for (const d of subtreeDirs(tree.dir)) runOp({ op: 'rmdir', path: d })
    } catch (err) {
      // The waits failed: fall back to the blunt synchronous path, then report.
      killAndRemoveSync(tree.dir)
      throw err
    } finally {
      const ws = [...open.workloads].map((id) => this.workloads.get(id)).filter((w): w is Workload => w !== undefined)
      for (const w of ws) w.subprocess.kill('SIGKILL')
      await withDeadline(Promise.all(ws.map((w) => w.exit)), TEARDOWN_MS)
      for (const id of open.workloads) this.workloads.delete(id)
      await open.workdir.cleanup()
      // Only now: a signal until here still finds the tree and removes what is left of it.
      untrackTree(tree.dir)
    }
  }

  async spawn(spec: SpawnSpec): Promise<Spawned> {
    const { id, workload } = await startInCgroup(spec.argv, { cgroup: spec.cgroup, user: spec.user, cwd: spec.cwd, stdin: spec.stdin }, spec.timeoutMs)
    const key = String(id.pid)
    this.workloads.set(key, workload)
    for (const t of this.trees.values()) if (spec.cgroup.startsWith(`${t.tree.dir}/`)) t.workloads.add(key)
    return { id: key, pid: id.pid, startTime: id.startTime }
  }

  private workload(id: string): Workload {
    const w = this.workloads.get(id)
    if (!w) throw new Error(`no process ${id} was started here`)
    return w
  }

  async type(id: string, line: string): Promise<void> {
    this.workload(id).type(line)
  }

  async outputMark(id: string): Promise<number> {
    return this.workload(id).mark
  }

  async waitOutput(id: string, pattern: string, since: number, expected: string, timeoutMs: number): Promise<string[]> {
    return [...(await this.workload(id).waitForOutput(new RegExp(pattern), expected, timeoutMs, since))]
  }

  async output(id: string): Promise<string> {
    return this.workload(id).output
  }

  async waitExit(procs: readonly (ProcIdentity & { label: string })[], timeoutMs: number): Promise<void> {
    const dead = (p: ProcIdentity) => {
      const w = this.workloads.get(String(p.pid))
      return w ? w.exited : liveness(p) !== 'alive'
    }
    await new Promise<void>((resolve, reject) => {
      // A child's exit is an event; another process's is seen in /proc, looked at every 10 ms.
      const check = () => {
        if (!procs.every(dead)) return
        clearInterval(poll)
        clearTimeout(timer)
        resolve()
      }
      const poll = setInterval(check, 10)
      const timer = setTimeout(() => {
        clearInterval(poll)
        reject(new KernelTimeoutError(`the exit of ${procs.length} process(es)`, `still running: ${procs.filter((p) => !dead(p)).map((p) => `${p.label} ${p.pid}`).join(', ')}`, timeoutMs))
      }, timeoutMs)
      for (const p of procs) void this.workloads.get(String(p.pid))?.exit.then(check)
      check()
    })
  }

  exec(spec: ExecSpec): Promise<ExecResult> {
    return execProgram(spec)
  }

  async setOomScoreAdj(pid: number, adj: number): Promise<void> {
    runChecked({ op: 'write', path: `/proc/${pid}/oom_score_adj`, data: String(adj) })
  }

  waitAllocationEnd(w: AllocationWatch, timeoutMs: number): Promise<AllocationEnd> {
    return waitAllocationEnd(w, timeoutMs)
  }

  async waitText(c: TextCondition, timeoutMs: number): Promise<{ groups: string[]; length: number }> {
    const re = new RegExp(c.pattern)
    let found: { groups: string[]; length: number } | undefined
    await waitForFile(
      c.path,
      (text) => text,
      (text) => {
        const m = text.slice(c.since).match(re)
        if (m) found = { groups: [...m], length: text.length }
        return m !== null
      },
      c.expected,
      (text) => JSON.stringify(text.slice(-200)),
      { timeoutMs },
    )
    return found!
  }

  async waitKeyed(c: KeyedCondition, timeoutMs: number): Promise<{ values: Record<string, number>; atUs: number }> {
    let atUs = 0
    const m = await waitForFile(
      c.path,
      parseKeyed,
      (m) => {
        const v = m.get(c.key)
        const done = v !== undefined && (c.cmp === 'eq' ? v === c.value : v >= c.value)
        if (done) atUs = monotonicUs()
        return done
      },
      c.expected,
      (m) => [...m].map(([k, v]) => `${k} ${v}`).join(', ') || '(empty)',
      { timeoutMs },
    )
    return { values: Object.fromEntries(m), atUs }
  }

  /**
   * Starts reading the kernel log before anyone follows it (the guest agent, at boot): a later
   * followKernelLog then costs no process start.
   */
  async prestartKernelLog(): Promise<void> {
    this.follower ??= KmsgFollower.open(
      (records) => this.subscriber?.onRecords(records.filter((r) => r.seq > this.subscriber!.cursor)),
      (why) => this.subscriber?.onBroken?.(why),
    )
  }

  private subscriber: { cursor: number; onRecords: (records: KmsgRecord[]) => void; onBroken?: ((why: string) => void) | undefined } | undefined

  async followKernelLog(onRecords: (records: KmsgRecord[]) => void, onBroken?: (why: string) => void): Promise<number> {
    if (this.subscriber) throw new Error('the kernel log is already followed on this machine')
    await this.prestartKernelLog()
    const cursor = await this.kernelLogNow()
    this.subscriber = { cursor, onRecords: (records) => records.length > 0 && onRecords(records), onBroken }
    if (this.follower!.broken) onBroken?.(this.follower!.broken)
    return cursor
  }

  /** Stops giving records to the follower's subscriber (the agent's rehearsal hands over to the host). */
  unfollowKernelLog(): void {
    this.subscriber = undefined
  }

  async kernelLogBarrier(): Promise<number> {
    if (!this.follower) throw new Error('the kernel log is not followed: call followKernelLog first')
    return this.kernelLogNow()
  }

  private barriers = 0

  /**
   * The newest record's sequence number now, once the follower has given out every record up to it.
   * In a guest, a record of ours is written and awaited: reading the whole log to find its end costs
   * ~90 ms there. A host's log is not ours to write: it is read to its end.
   */
  private async kernelLogNow(): Promise<number> {
    if (existsSync(GUEST_MARK)) {
      const text = `oomlab: barrier ${++this.barriers}`
      const seen = this.follower!.seen((r) => r.message === text, TEARDOWN_MS)
      writeMarker(text, 7)
      return (await seen).seq
    }
    const seq = currentSeq()
    await this.follower!.caughtUp(seq, TEARDOWN_MS)
    return seq
  }

  async kernelLogMark(text: string): Promise<Marker> {
    if (!existsSync(GUEST_MARK)) throw new Error("refusing to write into a host's kernel log: markers are for oomlab guests")
    return writeMarker(text)
  }

  async tracePopulated(on: boolean): Promise<boolean> {
    if (!on) {
      this.trace?.stop()
      this.trace = undefined
      return false
    }
    if (!existsSync(GUEST_MARK)) return false // tracing is the whole kernel's state: guests only
    this.trace ??= PopulatedTrace.start()
    return this.trace !== undefined
  }

  async readTrace(): Promise<string> {
    return this.trace ? this.trace.text() : ''
  }

  async dispose(): Promise<void> {
    const errors: unknown[] = []
    for (const { tree } of [...this.trees.values()]) await this.closeTree(tree).catch((err: unknown) => errors.push(err))
    this.trace?.stop()
    this.trace = undefined
    await this.follower?.close()
    this.follower = undefined
    for (const w of this.workloads.values()) w.subprocess.kill('SIGKILL')
    this.workloads.clear()
    if (errors.length > 0) throw errors[0]
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose()
  }
}

/** Waits for `p`, but not past `ms`: teardown must end even if a process does not. */
async function withDeadline(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([p, new Promise((resolve) => (timer = setTimeout(resolve, ms)))])
  clearTimeout(timer)
}
