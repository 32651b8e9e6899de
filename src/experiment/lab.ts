/**
 * A disposable laboratory for one experiment: a private cgroup tree under a unique root, the
 * processes started in it, the kernel log from the moment it opened, and the evidence of what
 * happened. Disposing of it kills what is left, waits for the tree to be empty and removes it,
 * whatever state the experiment ended in.
 */
import { join, relative, isAbsolute } from 'node:path'
import { readdirSync, rmdirSync, rmSync, writeFileSync, readFileSync, existsSync, lstatSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { chown, writeFile, mkdir } from 'node:fs/promises'
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise'
import {
  cgMount,
  cgCreate,
  cgDestroy,
  cgWrite,
  cgRead,
  cgHas,
  cgReadProcs,
  cgEnableControllers,
  cgControllers,
  cgCheckParent,
  parseKeyed,
  parsePids,
} from '../cgroup/cgroupfs.js'
import { parseMemoryEvents, type MemoryEvents, type MemoryEventKey } from '../cgroup/memory-events.js'
import { waitForKey, waitUntilEmpty } from '../cgroup/wait.js'
import { PopulatedTrace } from '../kmsg/tracefs.js'
import { KernelLog, monotonicUs, writeMarker, clockOffset, type Marker } from '../kmsg/reader.js'
import { groupOomEvents, isWithin, type OomEvent } from '../kmsg/oom.js'
import { formatRecord } from '../kmsg/record.js'
import { readStat, readUid, readOomScoreAdj, liveness, kernelRelease, type ProcIdentity, type Liveness } from '../proc/procfs.js'
import { startInCgroup, workloadUser, type Credentials, type Workload } from '../proc/spawn.js'
import { selfOwner, treeName, parseTreeName, ownerIsGone } from '../proc/owner.js'

export { workloadUser }
export { ownerOf, treeName, parseTreeName, type TreeOwner } from '../proc/owner.js'
import { UserError, KernelTimeoutError, Unsupported } from '../util/errors.js'
import { timeouts } from './timeouts.js'

/** Present only in an oomlab guest (see vm/initramfs.ts): its kernel log is ours to write to. */
const GUEST_MARK = '/etc/oomlab-guest'

/**
 * From the kernel's timestamp of the last "Killed process" record to the lab seeing "populated 0";
 * with the tracepoint, split into the kernel's part (to the cgroup really emptying) and the harness's.
 */
export interface KillDetection {
  lastKillRecordUs: number
  emptySeenUs: number
  latencyMs: number
  clockUncertaintyUs: number
  kernelMs?: number
  harnessMs?: number
}

export type Role = 'shell' | 'nohup sleep' | 'stress-ng' | 'stress-ng vm stressor' | 'stress-ng vm worker' | 'other'

export interface Member extends ProcIdentity {
  role: Role
  /** The article's name of its cgroup, e.g. "test01/test011". */
  cgroup: string
  comm: string
  uid?: number
  oomScoreAdj?: number
}

export interface CgroupSettings {
  'memory.max'?: string
  'memory.oom.group'?: 0 | 1
}

/** One cgroup of the experiment's tree. */
export class Cgroup {
  readonly settings: Record<string, string> = {}
  /** memory.events as the kernel printed it right after the cgroup was set up. */
  eventsTextAtStart: string | undefined

  constructor(
    /** The article's name, e.g. "test01/test011". */
    readonly name: string,
    /** Absolute directory on cgroupfs. */
    readonly dir: string,
    /** The path the kernel prints in its log, e.g. "/oomlab-123-ab12cd/test01/test011". */
    readonly kernelPath: string,
    private readonly step: (what: string) => void = () => undefined,
  ) {}

  async set(file: string, value: string): Promise<void> {
    await cgWrite(this.dir, file, value)
    this.settings[file] = (await cgRead(this.dir, file)).trim()
  }

  async memoryEvents(): Promise<MemoryEvents> {
    return parseMemoryEvents(await this.memoryEventsText())
  }

  memoryEventsText(): Promise<string> {
    return cgRead(this.dir, 'memory.events')
  }

  procs(): Promise<number[]> {
    return cgReadProcs(this.dir)
  }

  /** Waits on memory.events until `key` passes `done` (the kernel signals each change). */
  async waitForMemoryEvent(key: MemoryEventKey, done: (n: number) => boolean, expected: string): Promise<MemoryEvents> {
    const m = await waitForKey(this.dir, 'memory.events', key, done, expected, { timeoutMs: timeouts.oomMs })
    return Object.fromEntries(m) as MemoryEvents
  }

  /** Waits for "populated 0": no process left here or below. */
  async waitUntilEmpty(): Promise<void> {
    await waitUntilEmpty(this.dir, { timeoutMs: timeouts.killMs })
    this.step(`${this.name} empty`)
  }
}

export interface Fate {
  member: Member
  liveness: Liveness
  alive: boolean
  /** Still listed in its cgroup's cgroup.procs. */
  inCgroup: boolean
  /** The kernel's "Killed process" record for this PID, formatted as dmesg prints it. */
  killRecord?: string
}

const ARTICLE_STRESS = ['stress-ng', '--vm', '1', '--vm-bytes', '256M', '--vm-hang', '0', '-v'] as const
const SAFE_WORD = /^[\w.=/-]+$/

/** The article's shell: typed into, it starts stress-ng as its own child. */
export class Shell {
  constructor(
    private readonly lab: Lab,
    readonly member: Member,
    private readonly workload: Workload,
  ) {}

  get pid(): number {
    return this.member.pid
  }

  /**
   * Types the article's `stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v` and waits until its vm
   * stressor has started; records the stress-ng processes it sees then.
   */
  async runStressNg(argv: readonly string[] = ARTICLE_STRESS): Promise<void> {
    if (!argv.every((w) => SAFE_WORD.test(w))) throw new Error(`refusing to type an unsafe word into the shell: ${argv.join(' ')}`)
    const since = this.workload.mark
    this.workload.type(argv.join(' '))
    const m = await this.workload.waitForOutput(/vm: started \[(\d+)\]/, 'stress-ng to report "vm: started [PID]"', timeouts.startMs, since)
    this.lab.stressorPid = Number(m[1])
    this.lab.step('stress-ng vm started')
    await this.lab.discover()
  }

  get output(): string {
    return this.workload.output
  }
}

export interface LabOptions {
  /** The directory under which the run's root cgroup is created (default: the cgroup2 mount). */
  cgroupParent?: string
  user?: Credentials
  /** What to do when the kernel lacks what the scenario needs (the fixture skips the test with the reason). */
  onUnsupported?: (reason: string) => never
}

const liveLabs = new Set<Lab>()

export class Lab implements AsyncDisposable {
  readonly cgroups: Cgroup[] = []
  readonly members: Member[] = []
  readonly startedAt = new Date()
  stressorPid: number | undefined
  private shellWorkload: Workload | undefined
  /** What this lab started, by PID. */
  private readonly workloads = new Map<number, Workload>()
  private disposed = false
  private readonly notes: string[] = []
  private readonly openedUs = monotonicUs()
  /** What the experiment did when, for the benchmark: CLOCK_MONOTONIC µs since the lab opened. */
  readonly timeline: { step: string; atUs: number }[] = []
  /** In a guest, a kernel log record written at open: maps the log's clock onto the timeline's. */
  private marker: Marker | undefined
  /** `oomlab bench` only: when the kernel emptied each cgroup (see kmsg/tracefs.ts). */
  private trace: PopulatedTrace | undefined

  private constructor(
    readonly scenario: string,
    readonly root: Cgroup,
    readonly log: KernelLog,
    readonly user: Credentials,
    private readonly workdir: DirectoryResult,
    readonly capabilities: Record<string, boolean>,
    private readonly onUnsupported?: (reason: string) => never,
  ) {}

  step(what: string): void {
    this.timeline.push({ step: what, atUs: monotonicUs() - this.openedUs })
  }

  /**
   * Kill-detection latency: from the kernel's timestamp of the last "Killed process" record in this
   * tree to the moment the lab saw a cgroup empty. Needs the marker, so only in a guest.
   */
  killDetection(): KillDetection | undefined {
    const clock = this.marker && clockOffset(this.log.records, this.marker)
    const empty = this.timeline.find((t) => t.step.endsWith(' empty'))
    const kills = this.oomEvents().flatMap((e) => e.killed.map((k) => e.records.find((r) => r.seq === k.seq)!.usec))
    if (!clock || !empty || kills.length === 0) return undefined
    const lastKillRecordUs = Math.max(...kills)
    const emptySeenUs = this.openedUs + empty.atUs + clock.offsetUs
    const cg = this.cgroups.find((c) => empty.step === `${c.name} empty`)
    const emptiedUs = cg && this.trace?.emptiedAtUs(cg.kernelPath)
    return {
      lastKillRecordUs,
      emptySeenUs: Math.round(emptySeenUs),
      latencyMs: (emptySeenUs - lastKillRecordUs) / 1000,
      clockUncertaintyUs: clock.uncertaintyUs,
      ...(emptiedUs !== undefined && { kernelMs: (emptiedUs - lastKillRecordUs) / 1000, harnessMs: (emptySeenUs - emptiedUs) / 1000 }),
    }
  }

  /** The workload's working directory (a private temp dir). */
  get workdirPath(): string {
    return this.workdir.path
  }

  private get cwd(): string {
    return join(this.workdir.path, 'work')
  }

  /** Why the kernel cannot run this scenario, once it turned out so. */
  unsupportedReason: string | undefined

  private unsupported(reason: string): never {
    this.unsupportedReason = reason
    if (this.onUnsupported) this.onUnsupported(reason)
    throw new Unsupported(reason)
  }

  /** Creates the run's root cgroup (`oomlab-<pid>-<random>`) with the memory controller delegated. */
  static async open(scenario: string, opts: LabOptions = {}): Promise<Lab> {
    const mount = cgMount()
    if (!mount) throw new UserError('no cgroup2 filesystem is mounted; run `npm test` to use the VM')
    if (process.getuid?.() !== 0) throw new UserError('creating cgroups needs root; run with sudo')
    const parent = cgCheckParent(opts.cgroupParent ?? process.env.OOMLAB_CGROUP_PARENT ?? mount.mountPoint, mount.mountPoint)
    const rel = relative(mount.mountPoint, parent)
    if (!(await cgControllers(parent).catch((): string[] => [])).includes('memory'))
      throw new Unsupported(`the memory controller is not available in ${parent} (kernel ${kernelRelease()}${/\bcgroup_disable=memory\b/.test(readFileSync('/proc/cmdline', 'utf8')) ? ', booted with cgroup_disable=memory' : ''})`)
    reapStaleTrees(parent)

    const user = opts.user ?? workloadUser()
    const name = treeName(selfOwner())

    const dir = join(parent, name)
    // Named after the tree: a run killed too hard to clean up leaves both, and the next run finds both.
    const workdir = await tmpDir({ prefix: `${WORKDIR_PREFIX}${name}`, unsafeCleanup: true })
    let log: KernelLog
    try {
      // The temp dir stays root's (the reaper removes only root's dirs: nobody else can make one); the
      // workload works in a folder of its own inside.
      await mkdir(join(workdir.path, 'work'))
      await chown(join(workdir.path, 'work'), user.uid, user.gid)
      log = KernelLog.open()
    } catch (err) {
      await workdir.cleanup()
      throw err
    }
    try {
      await cgCreate(dir)
    } catch (err) {
      await log.close()
      await workdir.cleanup()
      throw err
    }
    // From here on, dispose() undoes everything, whatever fails next.
    const capabilities = { 'cgroup.kill': false, 'memory.events.local': false, 'memory.swap.max': false, oom_group_kill: false }
    const lab = new Lab(scenario, new Cgroup(name, dir, join(mount.root, rel, name)), log, user, workdir, capabilities, opts.onUnsupported)
    liveLabs.add(lab)
    try {
      if (existsSync(GUEST_MARK)) {
        lab.marker = writeMarker(`oomlab: ${name} opened`)
        if (process.env.OOMLAB_TRACE_POPULATED === '1') lab.trace = PopulatedTrace.start()
      }
      capabilities['cgroup.kill'] = await cgHas(dir, 'cgroup.kill')
      await cgEnableControllers(dir, ['memory'])
    } catch (err) {
      await lab.dispose()
      throw err
    }
    return lab
  }

  /** A test body that vitest abandoned (timeout) must not start anything in a tree being removed. */
  private live(): void {
    if (this.disposed) throw new Error(`the lab of "${this.scenario}" is already torn down`)
  }

  /** Creates `name` (e.g. "test01/test011") below the run's root, delegating memory down the path. */
  async cgroup(name: string, settings: CgroupSettings = {}): Promise<Cgroup> {
    this.live()
    const parentName = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : undefined
    const parent = parentName ? this.cgroups.find((c) => c.name === parentName) : this.root
    if (!parent) throw new Error(`create ${parentName} before ${name}`)
    if (parent !== this.root && !(await cgRead(parent.dir, 'cgroup.subtree_control')).includes('memory'))
      await cgEnableControllers(parent.dir, ['memory'])
    const cg = new Cgroup(name, join(this.root.dir, name), join(this.root.kernelPath, name), (what) => this.step(what))
    await cgCreate(cg.dir)
    this.cgroups.push(cg)
    this.capabilities['memory.events.local'] = await cgHas(cg.dir, 'memory.events.local')
    this.capabilities['memory.swap.max'] = await cgHas(cg.dir, 'memory.swap.max')
    this.capabilities.oom_group_kill = 'oom_group_kill' in (await cg.memoryEvents())
    this.capabilities['cgroup.kill'] = await cgHas(cg.dir, 'cgroup.kill')
    if (!(await cgHas(cg.dir, 'memory.oom.group')))
      this.unsupported(`kernel ${kernelRelease()} has no memory.oom.group (it came in 4.19)`)
    // Keep the workload off swap without touching the host's swap.
    if (this.capabilities['memory.swap.max']) await cg.set('memory.swap.max', '0')
    else if (readFileSync('/proc/swaps', 'utf8').trim().split('\n').length > 1)
      throw new UserError('swap is on and this kernel has no memory.swap.max to keep the test cgroups off it; boot with swapaccount=1 or use the VM')
    if (settings['memory.max'] !== undefined) await cg.set('memory.max', settings['memory.max'])
    if (settings['memory.oom.group'] !== undefined) await cg.set('memory.oom.group', String(settings['memory.oom.group']))
    cg.eventsTextAtStart = await cg.memoryEventsText()
    this.step(`cgroup ${name}`)
    return cg
  }

  /** The article's shell, placed in `cg` before it runs, as the unprivileged user. */
  async shell(cg: Cgroup, { as = this.user }: { as?: Credentials } = {}): Promise<Shell> {
    this.live()
    const { id, workload } = await startInCgroup(['sh'], { cgroup: cg.dir, user: as, cwd: this.cwd, stdin: 'pipe' }, timeouts.startMs)
    this.workloads.set(id.pid, workload)
    this.shellWorkload = workload
    this.step('shell started')
    return new Shell(this, this.remember(id, 'shell', cg), workload)
  }

  /** `nohup sleep 7200`, started beside the shell rather than by it: its death cannot come from the shell's. */
  async nohupSleep(cg: Cgroup, { as = this.user }: { as?: Credentials } = {}): Promise<Member> {
    this.live()
    const { id, workload } = await startInCgroup(['nohup', 'sleep', '7200'], { cgroup: cg.dir, user: as, cwd: this.cwd }, timeouts.startMs)
    this.workloads.set(id.pid, workload)
    this.step('nohup sleep started')
    return this.remember(id, 'nohup sleep', cg)
  }

  /** `echo -1000 > /proc/PID/oom_score_adj` as root: the OOM killer must never choose this process. */
  async protect(m: Member): Promise<void> {
    await writeFile(`/proc/${m.pid}/oom_score_adj`, '-1000')
    refresh(m)
  }

  /** Waits until processes this lab started (shell, sleeps) have exited: their exit is an event here. */
  async waitForExit(members: readonly Member[]): Promise<void> {
    const pending = members.map((m) => {
      const w = this.workloads.get(m.pid)
      if (!w) throw new Error(`${m.role} ${m.pid} was not started by this lab; wait on its cgroup instead`)
      return w.exit
    })
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const alive = members.filter((m) => !this.workloads.get(m.pid)!.exited)
        reject(new KernelTimeoutError(`the exit of ${members.length} process(es)`, `still running: ${alive.map((m) => `${m.role} ${m.pid}`).join(', ')}`, timeouts.killMs))
      }, timeouts.killMs)
    })
    try {
      await Promise.race([Promise.all(pending), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  private remember(id: ProcIdentity, role: Role, cg: Cgroup): Member {
    const m: Member = { ...id, role, cgroup: cg.name, comm: '?' }
    this.members.push(m)
    refresh(m)
    return m
  }

  /** Adds every process now in the tree that the lab does not know yet, with its role. */
  async discover(): Promise<void> {
    // Started processes exec'd setpriv, then their program, since they were remembered.
    for (const m of this.members) refresh(m)
    for (const cg of this.cgroups) {
      for (const pid of await cg.procs().catch(() => [])) {
        if (this.members.some((m) => m.pid === pid)) continue
        const stat = readStat(pid)
        if (!stat) continue
        this.remember({ pid, startTime: stat.startTime }, this.roleOf(pid, stat.ppid, stat.comm), cg)
      }
    }
  }

  private roleOf(pid: number, ppid: number, comm: string): Role {
    if (!comm.startsWith('stress-ng')) return 'other'
    if (pid === this.stressorPid) return 'stress-ng vm stressor'
    if (ppid === this.stressorPid) return 'stress-ng vm worker'
    if (this.members.some((m) => m.role === 'shell' && m.pid === ppid)) return 'stress-ng'
    return 'stress-ng vm worker'
  }

  /**
   * The OOM killer's runs that concern this lab's tree, matched by cgroup path or, where the
   * kernel's rate limit swallowed the header, by the PIDs this lab started; never by timing.
   */
  oomEvents(): OomEvent[] {
    const root = this.root.kernelPath
    return groupOomEvents(this.log.records)
      .map((e) => this.inOwnView(e))
      .filter(
        (e) =>
          isWithin(e.oomMemcg, root) ||
          isWithin(e.taskMemcg, root) ||
          isWithin(e.groupKill, root) ||
          (e.oomMemcg === undefined && e.killed.some((k) => this.members.some((m) => m.pid === k.pid && m.startTime >= 0))),
      )
  }

  /**
   * The kernel prints cgroup paths from the hierarchy's root; inside a private cgroup namespace the
   * mount shows less of it. The run's root name is unique, so a path through it is rewritten to this
   * lab's view of it.
   */
  private inOwnView(e: OomEvent): OomEvent {
    const own = (p: string | undefined) => {
      const i = p?.indexOf(`/${this.root.name}`) ?? -1
      if (p === undefined || i < 0) return p
      const rest = p.slice(i + this.root.name.length + 1)
      return rest === '' || rest.startsWith('/') ? this.root.kernelPath + rest : p
    }
    return { ...e, oomMemcg: own(e.oomMemcg), taskMemcg: own(e.taskMemcg), groupKill: own(e.groupKill) }
  }

  /** Waits for the kernel's record of an OOM kill in this tree that passes `done`. */
  async waitForOomEvent(done: (e: OomEvent) => boolean, expected: string): Promise<OomEvent> {
    const e = await this.log.waitFor(() => this.oomEvents().find(done), expected, timeouts.oomMs)
    this.step('OOM event in the kernel log')
    return e
  }

  /**
   * The kernel prints "Killed process" after it sends SIGKILL, so a victim can be gone before its
   * record is: wait until every dead member's record is in, or the timeout says which is missing.
   */
  async waitForKillRecords(): Promise<void> {
    const missing = () => this.members.filter((m) => liveness(m) !== 'alive' && !this.killRecordOf(m))
    await this.log
      .waitFor(() => (missing().length === 0 ? true : undefined), 'a "Killed process" record for every dead process', timeouts.recordMs)
      .catch(() => this.notes.push(`no kill record for: ${missing().map((m) => `${m.role} ${m.pid}`).join(', ')}`))
    this.step('kill records in')
  }

  private killRecordOf(m: Member): string | undefined {
    for (const e of this.oomEvents()) {
      const k = e.killed.find((r) => r.pid === m.pid)
      if (k) return formatRecord(e.records.find((r) => r.seq === k.seq)!)
    }
    return undefined
  }

  /** Who is alive, who died, and the kernel record behind each death. */
  async fates(): Promise<Fate[]> {
    // Workers restarted after a kill are known only from the kernel's records. Only a victim's
    // cgroup is printed (task_memcg); a group member's is not, so it stays unknown.
    for (const e of this.oomEvents())
      for (const k of e.killed)
        if (!this.members.some((m) => m.pid === k.pid)) {
          const cg = k.pid === e.victim?.pid ? this.cgroups.find((c) => c.kernelPath === e.taskMemcg)?.name : undefined
          const role: Role = k.pid === this.stressorPid ? 'stress-ng vm stressor' : k.comm === 'stress-ng' ? 'stress-ng' : k.comm.startsWith('stress-ng') ? 'stress-ng vm worker' : 'other'
          this.members.push({ pid: k.pid, startTime: -1, role, cgroup: cg ?? '(unknown)', comm: k.comm, ...(k.uid !== undefined && { uid: k.uid }), ...(k.oomScoreAdj !== undefined && { oomScoreAdj: k.oomScoreAdj }) })
        }
    for (const m of this.members) refresh(m)
    const procs = new Map<string, number[]>()
    for (const cg of this.cgroups) procs.set(cg.name, await cg.procs().catch(() => []))
    return this.members.map((member) => {
      const l: Liveness = member.startTime < 0 ? 'gone' : liveness(member)
      const killRecord = this.killRecordOf(member)
      return { member, liveness: l, alive: l === 'alive', inCgroup: procs.get(member.cgroup)?.includes(member.pid) ?? false, ...(killRecord && { killRecord }) }
    })
  }

  fateOf(fates: Fate[], m: { pid: number }): Fate {
    const f = fates.find((x) => x.member.pid === m.pid)
    if (!f) throw new Error(`no fate recorded for pid ${m.pid}`)
    return f
  }

  note(text: string): void {
    this.notes.push(text)
  }

  /** Everything a doubter needs: the tree, its settings, each process's fate and the kernel's records. */
  async evidence(verdict: { state: string; errors?: string[] }): Promise<object> {
    this.step('evidence')
    const fates = await this.fates().catch(() => [] as Fate[])
    const tree = []
    for (const cg of this.cgroups) {
      const after = await cg.memoryEventsText().catch(() => undefined)
      tree.push({
        name: cg.name,
        kernelPath: cg.kernelPath,
        settings: cg.settings,
        memoryEventsBefore: cg.eventsTextAtStart && parseMemoryEvents(cg.eventsTextAtStart),
        memoryEventsAfter: after && parseMemoryEvents(after),
        memoryEventsText: { before: cg.eventsTextAtStart, after },
      })
    }
    return {
      scenario: this.scenario,
      kernel: { release: kernelRelease(), version: readFileSync('/proc/version', 'utf8').trim() },
      startedAt: this.startedAt.toISOString(),
      durationMs: Date.now() - this.startedAt.getTime(),
      verdict,
      root: this.root.kernelPath,
      capabilities: this.capabilities,
      tree,
      processes: fates.map((f) => ({
        role: f.member.role,
        pid: f.member.pid,
        cgroup: f.member.cgroup,
        comm: f.member.comm,
        uid: f.member.uid,
        oomScoreAdj: f.member.oomScoreAdj,
        // "killed" only with the kernel's word for it; a death without a record is just "died".
        fate: f.alive ? 'survived' : f.killRecord ? 'killed' : 'died',
        liveness: f.liveness,
        inCgroupAfter: f.inCgroup,
        kernelRecord: f.killRecord ?? null,
      })),
      oomEvents: this.oomEvents().map((e) => ({
        oomMemcg: e.oomMemcg,
        taskMemcg: e.taskMemcg,
        victim: e.victim,
        groupKill: e.groupKill ?? null,
        killed: e.killed.map((k) => ({ pid: k.pid, comm: k.comm, uid: k.uid, oomScoreAdj: k.oomScoreAdj })),
      })),
      kernelLog: this.oomEvents().flatMap((e) => e.records.map(formatRecord)),
      // Every record since the cursor, as /dev/kmsg gave it: the raw material behind the verdict.
      kernelRecords: this.log.records.slice(-5000),
      kernelRecordsDropped: Math.max(0, this.log.records.length - 5000),
      // What the article's shell printed: stress-ng's -v output.
      shellOutput: this.shellWorkload?.output.slice(-8000),
      notes: this.notes,
      timeline: this.timeline.map((t) => ({ step: t.step, ms: Math.round(t.atUs / 100) / 10 })),
      killDetection: this.killDetection() ?? null,
    }
  }

  /** Kills what is left, waits for the tree to be empty, removes it deepest first. */
  async dispose(): Promise<void> {
    if (this.disposed) return
    this.disposed = true
    try {
      this.trace?.stop()
      await killTree(this.root.dir)
      for (const cg of [...this.cgroups].reverse()) await cgDestroy(cg.dir)
      await cgDestroy(this.root.dir)
    } catch (err) {
      // The waits failed: fall back to the blunt synchronous path, then report.
      killAndRemoveSync(this.root.dir)
      throw err
    } finally {
      await this.log.close()
      for (const w of this.workloads.values()) w.subprocess.kill('SIGKILL')
      await withDeadline(Promise.all([...this.workloads.values()].map((w) => w.exit)), timeouts.killMs)
      await this.workdir.cleanup()
      // Only now: a signal until here still finds this lab and removes what is left of it.
      liveLabs.delete(this)
    }
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

/**
 * Updates what /proc says of a live member (its program, uid and oom_score_adj change across the
 * exec of setpriv); a dead one keeps what was last seen, and its kernel record says the rest.
 */
function refresh(m: Member): void {
  if (m.startTime < 0 || liveness(m) !== 'alive') return
  const comm = readStat(m.pid)?.comm
  const uid = readUid(m.pid)
  const adj = readOomScoreAdj(m.pid)
  if (comm !== undefined) m.comm = comm
  if (uid !== undefined) m.uid = uid
  if (adj !== undefined) m.oomScoreAdj = adj
}

/** For the one scenario that shows why the workload must not run as root. */
export const ROOT: Credentials = { uid: 0, gid: 0 }

/** Kills every process in the subtree: cgroup.kill where the kernel has it (5.14+), else SIGKILL each PID until empty. */
export async function killTree(dir: string): Promise<void> {
  if (await cgHas(dir, 'cgroup.kill')) {
    await cgWrite(dir, 'cgroup.kill', '1')
    await waitUntilEmpty(dir, { timeoutMs: timeouts.killMs })
    return
  }
  // Old kernels: a process may fork while we kill, so repeat until the kernel says empty.
  for (let round = 0; ; round++) {
    for (const pid of subtreePids(dir)) signal(pid)
    try {
      await waitUntilEmpty(dir, { timeoutMs: round < 20 ? 500 : timeouts.killMs })
      return
    } catch (err) {
      if (round >= 20) throw err
    }
  }
}

function subtreePids(dir: string): number[] {
  const pids: number[] = []
  const walk = (d: string) => {
    try {
      pids.push(...parsePids(readFileSync(join(d, 'cgroup.procs'), 'utf8')))
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name))
    } catch {
      /* removed meanwhile */
    }
  }
  walk(dir)
  return pids
}

function signal(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    /* already gone */
  }
}

function subtreeDirs(dir: string): string[] {
  const dirs: string[] = []
  const walk = (d: string) => {
    dirs.push(d)
    try {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name))
    } catch {
      /* removed meanwhile */
    }
  }
  walk(dir)
  return dirs.reverse()
}

/**
 * Synchronous last-resort teardown for signals and exit, when no event loop is left to wait with:
 * kill, spin on cgroup.events (bounded), remove deepest first.
 */
export function killAndRemoveSync(dir: string): void {
  if (!existsSync(dir)) return
  const populated = () => {
    try {
      return parseKeyed(readFileSync(join(dir, 'cgroup.events'), 'utf8')).get('populated') === 1
    } catch {
      return false
    }
  }
  const deadline = Date.now() + 3000
  try {
    writeFileSync(join(dir, 'cgroup.kill'), '1')
  } catch {
    /* older kernel: signal each PID below */
  }
  while (populated() && Date.now() < deadline) for (const pid of subtreePids(dir)) signal(pid)
  for (const d of subtreeDirs(dir)) {
    try {
      rmdirSync(d)
    } catch {
      /* reported by the caller's next run as stale */
    }
  }
}

/**
 * Removes trees left by runs that died too hard to clean up: only trees named by this harness, owned
 * in our PID namespace by a process that is gone. A live owner's trees (another run, or another
 * worker thread of this one) are left to it.
 */
export function reapStaleTrees(parent: string, say: (line: string) => void = (l) => process.stderr.write(`oomlab: ${l}\n`)): string[] {
  const reaped: string[] = []
  const ourNs = selfOwner().pidns
  for (const e of readdirSync(parent, { withFileTypes: true })) {
    const owner = e.isDirectory() ? parseTreeName(e.name) : undefined
    if (!owner || owner.pidns !== ourNs) continue
    if (!ownerIsGone(owner)) continue
    killAndRemoveSync(join(parent, e.name))
    reaped.push(e.name)
    say(`removed stale cgroup tree ${join(parent, e.name)} left by an interrupted run`)
  }
  reapStaleWorkdirs(ourNs, say)
  return reaped
}

const WORKDIR_PREFIX = 'oomlab-work-'

/** The temp dirs of dead runs, by the same rule as their trees. */
function reapStaleWorkdirs(ourNs: number | undefined, say: (line: string) => void): void {
  const tmp = tmpdir()
  for (const f of readdirSync(tmp)) {
    // tmp names it <prefix>-<pid>-<random>
    const owner = f.startsWith(WORKDIR_PREFIX) ? parseTreeName(f.slice(WORKDIR_PREFIX.length).replace(/-\d+-\w+$/, '')) : undefined
    if (!owner || owner.pidns !== ourNs || !ownerIsGone(owner)) continue
    // Only a real directory of root's: /tmp is everyone's, and a name is easy to fake.
    const st = lstatSync(join(tmp, f), { throwIfNoEntry: false })
    if (!st?.isDirectory() || st.uid !== 0) continue
    rmSync(join(tmp, f), { recursive: true, force: true })
    say(`removed stale temp dir ${join(tmp, f)} left by an interrupted run`)
  }
}

function teardownAllSync(): void {
  for (const lab of liveLabs) {
    killAndRemoveSync(lab.root.dir)
    rmSync(lab.workdirPath, { recursive: true, force: true })
  }
  liveLabs.clear()
}

let handlersInstalled = false
/** Ctrl-C, SIGTERM and exit tear down whatever labs are open. */
export function installTeardownHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', teardownAllSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(sig, () => {
      teardownAllSync()
      process.kill(process.pid, sig)
    })
}
