/**
 * A disposable laboratory for one experiment: a private cgroup tree under a unique root, the
 * processes started in it, the kernel log from the moment it opened, and the evidence of what
 * happened. Its verbs are the article's procedure (create a cgroup, start the shell, run stress-ng,
 * wait for the kill, judge who survived); the cgroup handle, the shell, the clock and the evidence
 * live beside it. It acts on its machine only through the Os seam (src/os/os.ts), so the same Lab runs
 * natively and against a guest. Disposing of it kills what is left, waits for the tree to be empty
 * and removes it, whatever state the experiment ended in. It is a little over 400 lines because every
 * verb a spec calls is here, one reading of the procedure; what each verb leans on is in a room of its own.
 */
import { basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { parseMemoryEvents } from '../cgroup/memory-events.js'
import { KernelLog, monotonicUs } from '../kmsg/reader.js'
import type { OomEvent } from '../kmsg/oom.js'
import { formatRecord } from '../kmsg/record.js'
import { OpBatch } from '../os/batch.js'
import type { Os, OsFacts, ProcInfo, Tree, Credentials, Marker, AllocationEnd } from '../os/os.js'
import { workloadUser } from '../proc/spawn.js'
import { livenessFrom } from '../proc/procfs.js'
import { Unsupported } from '../util/errors.js'
import { timeouts } from './timeouts.js'
import { newcomers, refreshMember, oomEventsOf, killRecordOf, exitingRecordOf, deathCause, membersFromRecords, isRecordOf, type Member, type Fate, type Role } from './fates.js'
import { buildEvidence, type Observed } from './evidence.js'
import { CAPABILITIES, capabilityVerdict, type Capability } from '../kernel/capabilities.js'
import { Cgroup, readCgroup, setUpCgroup, takeSettings, type CgroupSettings } from './cgroup.js'
import { Shell } from './shell.js'
import { Timeline, relateClocks, relateClocksClosely, killDetectionOf, type ClockRelation, type KillDetection } from './clock.js'
import { allocationWatch, limitsNotReached } from './limits.js'
import type { Evidence } from '../report/evidence.js'

export { workloadUser, Cgroup, Shell }
export { parseSize } from './cgroup.js'
export type { Member, Fate, Role, Credentials, CgroupSettings, KillDetection }

export interface LabOptions {
  /** The machine to act on. */
  os: Os
  /** The directory under which the run's root cgroup is created (default: the cgroup2 mount). */
  cgroupParent?: string
  user?: Credentials
  /** What to do when the kernel lacks what the scenario needs (the fixture skips the test with the reason). */
  onUnsupported?: (reason: string) => never
}

/** What /proc says now of each member and of each cgroup's processes. */
interface ProcView {
  proc: Map<number, ProcInfo | null>
  procs: Map<string, ProcInfo[]>
}

export class Lab implements AsyncDisposable {
  readonly cgroups: Cgroup[] = []
  readonly members: Member[] = []
  readonly startedAt = new Date()
  stressorPid: number | undefined
  /** The workload the shell runs, as typed. */
  workload: string | undefined
  private shell_: Shell | undefined
  private disposed = false
  readonly notes: string[] = []
  /** What the experiment did when: this process's CLOCK_MONOTONIC µs since the lab opened. */
  private readonly clock = new Timeline()
  /** In a guest, a kernel log record written at open: maps the log's clock onto the machine's. */
  private marker: Marker | undefined
  /** The machine's clock against ours. */
  private machineClock: ClockRelation | undefined
  private tracing = false
  private readonly contributions: (() => Partial<Evidence>)[] = []
  private captured: Promise<Evidence> | undefined
  /** Why the kernel cannot run this scenario, once it turned out so. */
  unsupportedReason: string | undefined
  /** What the kernel exposes, as probed in the cgroups made so far. */
  readonly capabilities = Object.fromEntries(CAPABILITIES.map((c) => [c, false])) as Record<Capability, boolean>

  private constructor(
    readonly scenario: string,
    readonly os: Os,
    readonly facts: OsFacts,
    readonly tree: Tree,
    readonly root: Cgroup,
    readonly log: KernelLog,
    readonly user: Credentials,
    private readonly onUnsupported?: (reason: string) => never,
  ) {}

  step(what: string): void {
    this.clock.step(what)
  }

  /** The kernel cannot run this scenario (it lacks what it needs): the test is skipped with the reason, neither a pass nor a failure. */
  unsupported(reason: string): never {
    this.unsupportedReason = reason
    if (this.onUnsupported) this.onUnsupported(reason)
    throw new Unsupported(reason)
  }

  /** Creates the run's root cgroup (`oomlab-<pid>-<...>-<random>`) with the memory controller delegated. */
  static async open(scenario: string, opts: LabOptions): Promise<Lab> {
    const os = opts.os
    const t0 = monotonicUs()
    const facts = await os.facts()
    const t1 = monotonicUs()
    const user = opts.user ?? workloadUser()
    const log = new KernelLog()
    await os.followKernelLog(
      (records) => log.push(records),
      (why) => log.fail(why),
    )
    const tree = await os.openTree({ ...(opts.cgroupParent !== undefined && { parent: opts.cgroupParent }), user, nonce: randomBytes(3).toString('hex') })
    // From here on, dispose() undoes everything, whatever fails next.
    const lab = new Lab(scenario, os, facts, tree, new Cgroup(os, tree.name, tree.dir, tree.kernelPath), log, user, opts.onUnsupported)
    lab.machineClock = relateClocks(t0, t1, facts)
    try {
      if (facts.guest) {
        lab.marker = await os.kernelLogMark(`oomlab: ${tree.name} opened`)
        if (process.env.OOMLAB_TRACE_POPULATED === '1') {
          lab.tracing = await os.tracePopulated(true)
          lab.machineClock = await relateClocksClosely(os, lab.machineClock)
        }
      }
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

  /**
   * Creates `name` (e.g. "test01/test011") below the run's root, delegating memory down the path,
   * and applies its settings: one round trip. A setting the kernel did not take as written is a setup
   * failure, said as such.
   */
  async cgroup(name: string, settings: CgroupSettings = {}): Promise<Cgroup> {
    this.live()
    const parentName = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : undefined
    const parent = parentName ? this.cgroups.find((c) => c.name === parentName) : this.root
    if (!parent) throw new Error(`create ${parentName} before ${name}`)
    const cg = new Cgroup(this.os, name, join(this.root.dir, name), join(this.root.kernelPath, name), (what) => this.step(what))
    const setup = await setUpCgroup(this.os, cg, { ...(parent !== this.root && { parentDir: parent.dir }), settings })
    this.cgroups.push(cg)
    this.capabilities['memory.oom.group'] = setup.hasOomGroup
    this.capabilities['memory.events.local'] = setup.hasLocalEvents
    this.capabilities['cgroup.kill'] = setup.hasKill
    this.capabilities['memory.peak'] = setup.hasPeak
    this.capabilities['memory.swap.max'] = setup.swapOff
    // A kernel whose version must have it and lacks it is broken, not too old.
    const oomGroup = capabilityVerdict(this.facts.release, 'memory.oom.group', setup.hasOomGroup)
    if (oomGroup.kind === 'missing') throw new Error(oomGroup.why)
    if (oomGroup.kind === 'absent') this.unsupported(`kernel ${this.facts.release} has no memory.oom.group (it came in 4.19)`)
    if (!setup.swapOff && this.facts.swapDevices > 0)
      throw new Error(`swap is on and kernel ${this.facts.release} has no memory.swap.max to keep the test cgroups off it; boot with swapaccount=1 or use the VM`)
    takeSettings(cg, setup)
    this.capabilities.oom_group_kill = 'oom_group_kill' in parseMemoryEvents(cg.eventsTextAtStart ?? '')
    // Held to what its version must have, once: a kernel that lost a feature is not excused.
    if (this.cgroups.length === 1) for (const c of ['cgroup.kill', 'memory.events.local', 'memory.peak', 'memory.swap.max'] as const) this.has(c)
    this.step(`cgroup ${name}`)
    return cg
  }

  private async start(argv: string[], role: Role, cg: Cgroup, as: Credentials, stdin: 'pipe' | 'ignore'): Promise<{ member: Member; id: string }> {
    this.live()
    const s = await this.os.spawn({ argv, cgroup: cg.dir, user: as, cwd: this.tree.cwd, stdin, timeoutMs: timeouts.startMs })
    // The name it runs under until /proc says otherwise (a program it execs renames it): task->comm, 15 bytes at most.
    const member: Member = { pid: s.pid, startTime: s.startTime, role, cgroup: cg.name, comm: basename(argv[0]!).slice(0, 15), uid: as.uid }
    this.members.push(member)
    this.step(`${role} started`)
    return { member, id: s.id }
  }

  /**
   * A cgroup below one of ours that something else made (a container runtime): watched and judged like
   * the lab's own, its settings read back as the runtime wrote them.
   */
  async adopt(name: string): Promise<Cgroup> {
    this.live()
    const cg = new Cgroup(this.os, name, join(this.root.dir, name), join(this.root.kernelPath, name), (what) => this.step(what))
    await readCgroup(this.os, cg)
    this.cgroups.push(cg)
    this.step(`cgroup ${name} adopted`)
    return cg
  }

  /** Processes something else started (a container's), with their roles; stress-ng's vm stressor among them, if it is. */
  enlist(members: readonly Member[], stressorPid?: number): void {
    for (const m of members) if (!this.members.some((x) => x.pid === m.pid && x.startTime === m.startTime)) this.members.push(m)
    if (stressorPid !== undefined) this.stressorPid = stressorPid
  }

  /** Evidence of a fixture beside the lab (a runtime's view of its containers), read with the lab's. */
  contribute(part: () => Partial<Evidence>): void {
    this.contributions.push(part)
  }

  /**
   * Reads the evidence now, before a fixture that depends on the lab tears down what it reads (a runtime
   * deleting its containers' cgroups); evidence() then returns this reading.
   */
  capture(): Promise<Evidence> {
    return (this.captured ??= this.read({ state: 'pending' }))
  }

  /** The article's shell, placed in `cg` before it runs, as the unprivileged user. */
  async shell(cg: Cgroup, { as = this.user }: { as?: Credentials } = {}): Promise<Shell> {
    const { member, id } = await this.start(['sh'], 'shell', cg, as, 'pipe')
    this.shell_ = new Shell(this.os, member, id, async ({ stressorPid, command }) => {
      this.stressorPid = stressorPid
      this.workload = command
      this.step('stress-ng vm started')
      await this.discover()
    })
    return this.shell_
  }

  /** `nohup sleep 7200`, started beside the shell rather than by it: its death cannot come from the shell's. */
  async nohupSleep(cg: Cgroup, { as = this.user }: { as?: Credentials } = {}): Promise<Member> {
    const { member } = await this.start(['nohup', 'sleep', '7200'], 'nohup sleep', cg, as, 'ignore')
    member.execs = 'sleep'
    return member
  }

  /** `echo -1000 > /proc/PID/oom_score_adj` as root: the OOM killer must never choose this process. */
  async protect(m: Member): Promise<void> {
    await this.os.setOomScoreAdj(m.pid, -1000)
    await this.refresh()
  }

  /** Waits until processes have exited: the ones this lab started, or any it knows (e.g. a victim). */
  async waitForExit(members: readonly Member[]): Promise<void> {
    await this.os.waitExit(members.map((m) => ({ pid: m.pid, startTime: m.startTime, label: m.role })), timeouts.killMs)
  }

  /** Reads /proc for every member and every cgroup's procs, in one round trip. */
  private async readProcs(): Promise<ProcView> {
    const b = new OpBatch()
    const members = this.members.map((m) => ({ pid: m.pid, slot: b.proc(m.pid) }))
    const cgroups = this.cgroups.map((c) => ({ name: c.name, slot: b.procs(c.dir) }))
    await b.run(this.os)
    return {
      proc: new Map(members.map((m) => [m.pid, m.slot.valueOrUndefined() ?? null])),
      procs: new Map(cgroups.map((c) => [c.name, c.slot.valueOrUndefined() ?? []])),
    }
  }

  private async refresh(): Promise<ProcView> {
    const s = await this.readProcs()
    for (const m of this.members) refreshMember(m, s.proc.get(m.pid))
    return s
  }

  /** Adds every process now in the tree that the lab does not know yet, with its role. */
  async discover(): Promise<void> {
    this.members.push(...newcomers((await this.refresh()).procs, this.members, this.stressorPid))
  }

  /** The OOM killer's runs that concern this lab's tree. */
  oomEvents(): OomEvent[] {
    return oomEventsOf(this.log.records, this.tree, this.members)
  }

  /**
   * Waits for the kernel's record of an OOM kill in this tree that passes `done`. A workload whose
   * allocation ends below every limit fails it at once, naming each limit and how close it came.
   */
  async waitForOomEvent(done: (e: OomEvent) => boolean, expected: string): Promise<OomEvent> {
    const waited = this.log.waitFor(() => this.oomEvents().find(done), expected, timeouts.oomMs)
    const first = await Promise.race([waited.then((e) => ({ e })), this.allocationEnd().then((end) => ({ end }))])
    if ('end' in first && first.end?.by === 'asleep') {
      // What the kernel logged until now is in: a kill it made before the workload slept would be too.
      await this.os.kernelLogBarrier()
      if (!this.oomEvents().find(done)) {
        waited.catch(() => undefined)
        const said = await limitsNotReached(this.os, this.cgroups, { release: this.facts.release, asleep: first.end, command: this.workload })
        throw new Error(`${said}; was waiting for the kernel log: ${expected}`)
      }
    }
    const e = 'e' in first ? first.e : await waited
    this.step('OOM event in the kernel log')
    return e
  }

  /** How the shell's stress-ng ended its allocation; undefined when none runs, or the wait failed (the log's wait then says why). */
  private async allocationEnd(): Promise<AllocationEnd | undefined> {
    const stressor = this.members.find((m) => m.pid === this.stressorPid && m.startTime >= 0)
    if (!stressor) return undefined
    return this.os.waitAllocationEnd(allocationWatch(stressor, this.cgroups), timeouts.oomMs).catch(() => undefined)
  }

  /** The start time /proc gave for a process the kernel named, or -1 when this lab never saw it. */
  private startTimeOf(p: { pid: number; comm: string }): number {
    return this.members.find((m) => isRecordOf(m, p))?.startTime ?? -1
  }

  /**
   * Waits for a group kill of `cg` by the OOM killer, and fails at once when the kernel ended an OOM
   * kill in this tree without one: the allocating victim runs the OOM killer itself, so once it has
   * exited and the kernel log has been read up to that moment, a group line would be there.
   */
  async waitForGroupKill(cg: Cgroup): Promise<OomEvent> {
    const expected = `"Tasks in ${cg.kernelPath} are going to be killed due to memory.oom.group set"`
    const first = await this.waitForOomEvent((e) => e.groupKill !== undefined || e.victim !== undefined, `an OOM kill in ${cg.name}`)
    if (first.groupKill !== undefined) return first
    const victim = first.victim!
    await this.os.waitExit([{ pid: victim.pid, startTime: this.startTimeOf(victim), label: 'the OOM victim' }], timeouts.killMs)
    await this.os.kernelLogBarrier()
    const settled = this.oomEvents().find((e) => e.groupKill !== undefined)
    if (settled) return settled
    const event = this.oomEvents().find((e) => e.victim !== undefined && isRecordOf(e.victim, victim)) ?? first
    throw new Error(`expected ${expected}, but the kernel ended the OOM kill without a group kill; its records: ${event.records.map(formatRecord).join(' | ')}`)
  }

  /**
   * Before judging who survived: every OOM victim has exited, and the kernel log has been read up to
   * this moment, so a group kill's later records (its line, its members) are in.
   */
  async settle(): Promise<void> {
    const victims = this.oomEvents().flatMap((e) => (e.victim ? [e.victim] : []))
    if (victims.length > 0) await this.os.waitExit(victims.map((v) => ({ pid: v.pid, startTime: this.startTimeOf(v), label: `OOM victim ${v.comm}` })), timeouts.killMs)
    await this.os.kernelLogBarrier()
    this.step('kernel log settled')
  }

  /**
   * The kernel prints "Killed process" after it sends SIGKILL, so a victim can be gone before its
   * record is: wait until every dead member's record is in, or the timeout says which is missing.
   */
  async waitForKillRecords(): Promise<void> {
    await this.settle()
    const s = await this.readProcs()
    // A process of a container whose init the OOM killer took dies with its PID namespace, with no record of its own.
    const missing = () => this.members.filter((m) => livenessFrom(m, s.proc.get(m.pid)) !== 'alive' && !killRecordOf(this.oomEvents(), m) && !deathCause(this.oomEvents(), m))
    await this.log
      .waitFor(() => (missing().length === 0 ? true : undefined), 'a "Killed process" record for every dead process', timeouts.recordMs)
      .catch(() => this.notes.push(`no kill record for: ${missing().map((m) => `${m.role} ${m.pid}`).join(', ')}`))
    this.step('kill records in')
  }

  /** Who is alive, who died, and the kernel record behind each death: read once the kernel log has settled. */
  async fates(): Promise<Fate[]> {
    await this.settle()
    const events = this.oomEvents()
    this.members.push(...membersFromRecords(events, this.members, (p) => this.cgroups.find((c) => c.kernelPath === p)?.name, this.stressorPid))
    return this.fatesNow(events)
  }

  private async fatesNow(events: OomEvent[]): Promise<Fate[]> {
    const s = await this.refresh()
    return this.members.map((member) => {
      const l = livenessFrom(member, s.proc.get(member.pid))
      const killRecord = killRecordOf(events, member)
      const exitingRecord = killRecord ? undefined : exitingRecordOf(events, member)
      const cause = l === 'alive' || killRecord ? undefined : deathCause(events, member)
      return { member, liveness: l, alive: l === 'alive', inCgroup: s.procs.get(member.cgroup)?.some((p) => p.pid === member.pid) ?? false, ...(killRecord && { killRecord }), ...(exitingRecord && { exitingRecord }), ...(cause && { cause }) }
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

  /**
   * Whether the kernel exposes `c`. A kernel whose upstream version must have it (whoever built it) and
   * lacks it fails the test, naming both; an older one gets a note.
   */
  has(c: Capability): boolean {
    const verdict = capabilityVerdict(this.facts.release, c, this.capabilities[c])
    if (verdict.kind === 'missing') throw new Error(verdict.why)
    if (verdict.kind === 'absent') this.note(verdict.why)
    return verdict.kind === 'present'
  }

  /**
   * Kill-detection latency: from the kernel's timestamp of the last "Killed process" record in this
   * tree to the spec knowing a cgroup is empty, on the kernel log's clock. Needs the marker, so only in a guest.
   */
  killDetection(trace = ''): KillDetection | undefined {
    return killDetectionOf({
      records: this.log.records,
      marker: this.marker,
      clock: this.machineClock,
      timeline: this.clock,
      cgroups: this.cgroups,
      killsUs: this.oomEvents().flatMap((e) => e.killed.map((k) => k.usec)),
      trace,
    })
  }

  /** What the lab saw, as plain data. */
  observed(): Observed {
    return {
      scenario: this.scenario,
      facts: this.facts,
      machine: this.os.stats(),
      startedAt: this.startedAt,
      root: this.root.kernelPath,
      capabilities: this.capabilities,
      cgroups: this.cgroups,
      notes: this.notes,
      steps: this.clock.steps,
      records: this.log.records,
      events: this.oomEvents(),
    }
  }

  /** Everything a doubter needs: the tree, its settings, each process's fate and the kernel's records. */
  evidence(verdict: { state: string; errors?: string[] }): Promise<Evidence> {
    return this.captured ?? this.read(verdict)
  }

  private async read(verdict: { state: string; errors?: string[] }): Promise<Evidence> {
    this.step('evidence')
    const fates = await this.fatesNow(this.oomEvents()).catch(() => [] as Fate[])
    const b = new OpBatch()
    const after = this.cgroups.map((c) => b.read(join(c.dir, 'memory.events')))
    const ran = await b.run(this.os).then(() => true, () => false)
    const trace = this.tracing ? await this.os.readTrace().catch(() => '') : ''
    const evidence = buildEvidence({
      observed: this.observed(),
      verdict,
      fates,
      eventsAfter: after.map((a) => (ran ? a.valueOrUndefined() : undefined)),
      shellOutput: await this.shell_?.output().catch(() => undefined),
      killDetection: this.killDetection(trace),
      factsAfter: await this.os.facts().catch(() => undefined),
    })
    return Object.assign(evidence, ...this.contributions.map((c) => c()))
  }

  /** Kills what is left, waits for the tree to be empty, removes it deepest first (a guest is thrown away instead). */
  async dispose(): Promise<void> {
    if (this.disposed) return
    this.disposed = true
    if (this.os.disposable) return
    if (this.tracing) await this.os.tracePopulated(false).catch(() => undefined)
    await this.os.closeTree(this.tree)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose()
  }
}

/** For the one scenario that shows why the workload must not run as root. */
export const ROOT: Credentials = { uid: 0, gid: 0 }
