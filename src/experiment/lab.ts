/**
 * A disposable laboratory for one experiment: a private cgroup tree under a unique root, the
 * processes started in it, the kernel log from the moment it opened, and the evidence of what
 * happened. It acts on its machine only through the Os seam (src/os/os.ts), so the same Lab runs
 * natively and against a guest. Disposing of it kills what is left, waits for the tree to be empty
 * and removes it, whatever state the experiment ended in.
 */
import { basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { parseMemoryEvents, type MemoryEvents, type MemoryEventKey } from '../cgroup/memory-events.js'
import { KernelLog, monotonicUs, clockOffset } from '../kmsg/reader.js'
import { lastEmptied } from '../kmsg/tracefs.js'
import type { OomEvent } from '../kmsg/oom.js'
import { formatRecord } from '../kmsg/record.js'
import { valueOf, type Os, type OsFacts, type Op, type ProcInfo, type Tree, type Credentials, type Marker, type AllocationEnd } from '../os/os.js'
import { workloadUser } from '../proc/spawn.js'
import { livenessFrom } from '../proc/procfs.js'
import { Unsupported } from '../util/errors.js'
import { timeouts } from './timeouts.js'
import { roleOf, refreshMember, oomEventsOf, killRecordOf, membersFromRecords, isRecordOf, type Member, type Fate, type Role } from './fates.js'
import { buildEvidence } from './evidence.js'
import { SINCE, mustHave, type Capability } from './capabilities.js'
import type { Evidence } from '../report/evidence.js'

export { workloadUser }
export type { Member, Fate, Role, Credentials }

/**
 * From the kernel's timestamp of the last "Killed process" record to the spec knowing a cgroup is
 * empty; with the tracepoint, split into the kernel's part (to the cgroup really emptying) and the
 * harness's (the machine noticing, and the answer reaching the spec).
 */
export interface KillDetection {
  lastKillRecordUs: number
  emptySeenUs: number
  latencyMs: number
  clockUncertaintyUs: number
  kernelMs?: number
  harnessMs?: number
  /** Of the harness's part: the machine noticing (inotify to the agent's read), the rest is the answer's way to the spec. */
  machineMs?: number
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
    private readonly os: Os,
    /** The article's name, e.g. "test01/test011". */
    readonly name: string,
    /** Absolute directory on the machine's cgroupfs. */
    readonly dir: string,
    /** The path the kernel prints in its log, e.g. "/oomlab-123-ab12cd/test01/test011". */
    readonly kernelPath: string,
    private readonly step: (what: string) => void = () => undefined,
  ) {}

  private async read(file: string): Promise<string> {
    const op: Op = { op: 'read', path: join(this.dir, file) }
    return valueOf(op, (await this.os.run([op]))[0]) as string
  }

  async memoryEvents(): Promise<MemoryEvents> {
    return parseMemoryEvents(await this.memoryEventsText())
  }

  memoryEventsText(): Promise<string> {
    return this.read('memory.events')
  }

  async procs(): Promise<number[]> {
    return (await this.read('cgroup.procs')).split('\n').filter((l) => /^\d+$/.test(l)).map(Number)
  }

  /** Waits on memory.events until `key` reaches at least `atLeast` (the kernel signals each change). */
  async waitForMemoryEvent(key: MemoryEventKey, { atLeast }: { atLeast: number }): Promise<MemoryEvents> {
    const { values } = await this.os.waitKeyed({ path: join(this.dir, 'memory.events'), key, cmp: 'ge', value: atLeast, expected: `${key} >= ${atLeast} in ${this.name}/memory.events` }, timeouts.oomMs)
    return values as MemoryEvents
  }

  /** Waits for "populated 0": no process left here or below. */
  async waitUntilEmpty(): Promise<void> {
    const { atUs } = await this.os.waitKeyed({ path: join(this.dir, 'cgroup.events'), key: 'populated', cmp: 'eq', value: 0, expected: `"populated 0" in ${this.name}/cgroup.events` }, timeouts.killMs)
    this.emptySeenByMachineUs = atUs
    this.step(`${this.name} empty`)
  }

  /** The machine's clock when it saw this cgroup empty. */
  emptySeenByMachineUs: number | undefined
}

const ARTICLE_STRESS = ['stress-ng', '--vm', '1', '--vm-bytes', '256M', '--vm-hang', '0', '-v'] as const
const SAFE_WORD = /^[\w.=/-]+$/

/** The article's shell: typed into, it starts stress-ng as its own child. */
export class Shell {
  constructor(
    private readonly lab: Lab,
    private readonly os: Os,
    readonly member: Member,
    private readonly id: string,
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
    const since = await this.os.outputMark(this.id)
    this.lab.workload = argv.join(' ')
    await this.os.type(this.id, argv.join(' '))
    const m = await this.os.waitOutput(this.id, String.raw`vm: started \[(\d+)\]`, since, 'stress-ng to report "vm: started [PID]"', timeouts.startMs)
    this.lab.stressorPid = Number(m[1])
    this.lab.step('stress-ng vm started')
    await this.lab.discover()
  }

  /** What the shell printed: stress-ng's -v output. */
  output(): Promise<string> {
    return this.os.output(this.id)
  }
}

export interface LabOptions {
  /** The machine to act on. */
  os: Os
  /** The directory under which the run's root cgroup is created (default: the cgroup2 mount). */
  cgroupParent?: string
  user?: Credentials
  /** What to do when the kernel lacks what the scenario needs (the fixture skips the test with the reason). */
  onUnsupported?: (reason: string) => never
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
  private readonly openedUs = monotonicUs()
  /** What the experiment did when: this process's CLOCK_MONOTONIC µs since the lab opened. */
  readonly timeline: { step: string; atUs: number }[] = []
  /** In a guest, a kernel log record written at open: maps the log's clock onto the machine's. */
  private marker: Marker | undefined
  /** The machine's clock minus ours (µs), and how sure (half the round trip). */
  private clock: { offsetUs: number; uncertaintyUs: number } | undefined
  private tracing = false
  /** Why the kernel cannot run this scenario, once it turned out so. */
  unsupportedReason: string | undefined
  readonly capabilities: Record<Capability, boolean> = { 'cgroup.kill': false, 'memory.events.local': false, 'memory.swap.max': false, oom_group_kill: false }

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
    this.timeline.push({ step: what, atUs: monotonicUs() - this.openedUs })
  }

  private unsupported(reason: string): never {
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
    lab.clock = { offsetUs: facts.monotonicUs - (t0 + t1) / 2, uncertaintyUs: (t1 - t0) / 2 }
    try {
      if (facts.guest) {
        lab.marker = await os.kernelLogMark(`oomlab: ${tree.name} opened`)
        if (process.env.OOMLAB_TRACE_POPULATED === '1') {
          lab.tracing = await os.tracePopulated(true)
          // The bench's kill detection: the round trip that relates the clocks best is the shortest.
          for (let i = 0; i < 5; i++) {
            const a = monotonicUs()
            const m = await os.clock()
            const b = monotonicUs()
            if ((b - a) / 2 < lab.clock.uncertaintyUs) lab.clock = { offsetUs: m - (a + b) / 2, uncertaintyUs: (b - a) / 2 }
          }
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
    const file = (f: string) => join(cg.dir, f)
    const writes: [string, string][] = []
    if (settings['memory.max'] !== undefined) writes.push(['memory.max', settings['memory.max']])
    if (settings['memory.oom.group'] !== undefined) writes.push(['memory.oom.group', String(settings['memory.oom.group'])])
    const ops: Op[] = [
      ...(parent === this.root ? [] : [{ op: 'write', path: join(parent.dir, 'cgroup.subtree_control'), data: '+memory' } as const]),
      { op: 'mkdir', path: cg.dir },
      { op: 'exists', path: file('memory.oom.group') },
      { op: 'exists', path: file('memory.events.local') },
      { op: 'exists', path: file('cgroup.kill') },
      // Keep the workload off swap without touching the machine's swap (fails where the kernel has no memory.swap.max).
      { op: 'write', path: file('memory.swap.max'), data: '0' },
      ...writes.map(([f, v]): Op => ({ op: 'write', path: file(f), data: v })),
      ...writes.map(([f]): Op => ({ op: 'read', path: file(f) })),
      { op: 'read', path: file('memory.events') },
    ]
    const r = await this.os.run(ops)
    const at = (i: number) => valueOf(ops[i]!, r[i])
    let i = parent === this.root ? 0 : 1
    if (i === 1) at(0)
    at(i++) // mkdir
    this.cgroups.push(cg)
    const hasOomGroup = at(i++) as boolean
    this.capabilities['memory.events.local'] = at(i++) as boolean
    this.capabilities['cgroup.kill'] = at(i++) as boolean
    const swap = r[i++]!
    this.capabilities['memory.swap.max'] = swap.ok
    if (!hasOomGroup) this.unsupported(`kernel ${this.facts.release} has no memory.oom.group (it came in 4.19)`)
    if (!swap.ok && this.facts.swapDevices > 0)
      throw new Error(`swap is on and kernel ${this.facts.release} has no memory.swap.max to keep the test cgroups off it; boot with swapaccount=1 or use the VM`)
    if (swap.ok) cg.settings['memory.swap.max'] = '0'
    for (const [f, v] of writes) {
      const wi = i++
      if (!r[wi]!.ok) throw new Error(`setup: the kernel refused ${f}=${v} on ${name}: ${(r[wi] as { error: string }).error}`)
    }
    for (const [f, v] of writes) {
      const got = (at(i++) as string).trim()
      cg.settings[f] = got
      // memory.max reads back in bytes; oom.group as written.
      const expected = f === 'memory.max' ? String(parseSize(v)) : v
      if (got !== expected) throw new Error(`setup: ${name}/${f} reads back "${got}" after writing "${v}": the kernel did not take the setting`)
    }
    cg.eventsTextAtStart = at(i++) as string
    this.capabilities.oom_group_kill = 'oom_group_kill' in parseMemoryEvents(cg.eventsTextAtStart)
    // Held to what its version must have, once: a kernel that lost a feature is not excused.
    if (this.cgroups.length === 1) for (const c of ['cgroup.kill', 'memory.events.local', 'memory.swap.max'] as const) this.has(c)
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

  /** The article's shell, placed in `cg` before it runs, as the unprivileged user. */
  async shell(cg: Cgroup, { as = this.user }: { as?: Credentials } = {}): Promise<Shell> {
    const { member, id } = await this.start(['sh'], 'shell', cg, as, 'pipe')
    this.shell_ = new Shell(this, this.os, member, id)
    return this.shell_
  }

  /** `nohup sleep 7200`, started beside the shell rather than by it: its death cannot come from the shell's. */
  async nohupSleep(cg: Cgroup, { as = this.user }: { as?: Credentials } = {}): Promise<Member> {
    return (await this.start(['nohup', 'sleep', '7200'], 'nohup sleep', cg, as, 'ignore')).member
  }

  /** `echo -1000 > /proc/PID/oom_score_adj` as root: the OOM killer must never choose this process. */
  async protect(m: Member): Promise<void> {
    await this.os.setOomScoreAdj(m.pid, -1000)
    await this.refresh()
  }

  /** Waits until processes have exited: the ones this lab started, or any it knows (e.g. a victim). */
  async waitForExit(members: readonly Member[]): Promise<void> {
    await this.os.waitExit(
      members.map((m) => ({ pid: m.pid, startTime: m.startTime, label: m.role })),
      timeouts.killMs,
    )
  }

  /** Reads /proc for every member and every cgroup's procs, in one round trip. */
  private async snapshot(): Promise<{ proc: Map<number, ProcInfo | null>; procs: Map<string, ProcInfo[]> }> {
    const ops: Op[] = [...this.members.map((m): Op => ({ op: 'proc', pid: m.pid })), ...this.cgroups.map((c): Op => ({ op: 'procs', path: c.dir }))]
    const r = await this.os.run(ops)
    const proc = new Map<number, ProcInfo | null>()
    this.members.forEach((m, i) => proc.set(m.pid, r[i]!.ok ? (r[i]!.value as ProcInfo | null) : null))
    const procs = new Map<string, ProcInfo[]>()
    this.cgroups.forEach((c, j) => {
      const x = r[this.members.length + j]!
      procs.set(c.name, x.ok ? (x.value as ProcInfo[]) : [])
    })
    return { proc, procs }
  }

  private async refresh(): Promise<Awaited<ReturnType<Lab['snapshot']>>> {
    const s = await this.snapshot()
    for (const m of this.members) refreshMember(m, s.proc.get(m.pid))
    return s
  }

  /** Adds every process now in the tree that the lab does not know yet, with its role. */
  async discover(): Promise<void> {
    const s = await this.refresh()
    const shellPids = this.members.filter((m) => m.role === 'shell').map((m) => m.pid)
    const stressNgPid = [...s.procs.values()].flat().find((p) => p.pid === this.stressorPid)?.ppid
    for (const cg of this.cgroups)
      for (const p of s.procs.get(cg.name) ?? []) {
        if (this.members.some((m) => m.pid === p.pid)) continue
        const m: Member = { pid: p.pid, startTime: p.startTime, role: roleOf(p, { stressorPid: this.stressorPid, shellPids, stressNgPid }), cgroup: cg.name, comm: p.comm }
        refreshMember(m, p)
        this.members.push(m)
      }
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
      // What the kernel logged until now is in; a kill it made before the workload slept would be too.
      await this.os.kernelLogBarrier()
      const e = this.oomEvents().find(done)
      if (!e) {
        waited.catch(() => undefined)
        throw new Error(`${await this.limitsNotReached(first.end)}; was waiting for the kernel log: ${expected}`)
      }
    }
    const e = 'e' in first ? first.e : await waited
    this.step('OOM event in the kernel log')
    return e
  }

  /** How the stress-ng run ended its allocation; undefined when none runs or the wait failed (the log's wait says why). */
  private async allocationEnd(): Promise<AllocationEnd | undefined> {
    const stressor = this.members.find((m) => m.pid === this.stressorPid && m.startTime >= 0)
    if (!stressor) return undefined
    const limits = this.cgroups.filter((c) => c.settings['memory.max'] !== undefined && c.settings['memory.max'] !== 'max')
    return this.os
      .waitAllocationEnd(
        {
          parent: { pid: stressor.pid, startTime: stressor.startTime },
          cgroups: this.cgroups.map((c) => c.dir),
          limits: limits.map((c) => ({ path: join(c.dir, 'memory.events'), oomBefore: parseMemoryEvents(c.eventsTextAtStart ?? '').oom ?? 0 })),
        },
        timeouts.oomMs,
      )
      .catch(() => undefined)
  }

  /** Each limit of the tree and the most its cgroup used (memory.peak, 5.19+; else memory.current, the memory held now). */
  private async limitsNotReached(end: Extract<AllocationEnd, { by: 'asleep' }>): Promise<string> {
    const limited = this.cgroups.filter((c) => c.settings['memory.max'] !== undefined && c.settings['memory.max'] !== 'max')
    const files = ['memory.max', 'memory.peak', 'memory.current', 'memory.events'] as const
    const ops: Op[] = limited.flatMap((c) => files.map((f): Op => ({ op: 'read', path: join(c.dir, f) })))
    const r = await this.os.run(ops)
    const text = (i: number) => (r[i]?.ok ? String(r[i].value).trim() : undefined)
    const said = limited.map((c, j) => {
      const [max, peak, current, events] = files.map((_, k) => text(j * files.length + k))
      const ev = parseMemoryEvents(events ?? '')
      const used = peak !== undefined ? `peak ${mib(peak)} (memory.peak)` : `memory.current ${mib(current)} (no memory.peak on kernel ${this.facts.release}: it came in 5.19)`
      return `${c.name} never reached its limit: memory.max ${mib(max)}, ${used}, memory.events max ${ev.max ?? '?'} oom ${ev.oom ?? '?'}`
    })
    const workload = this.workload ? ` of \`${this.workload}\`` : ''
    return `${said.join('; ') || 'no cgroup of the tree has a memory.max'}: ${end.comm} ${end.pid}${workload} holds its memory asleep in ${end.wchan} (--vm-hang), so no OOM kill will come`
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
    await this.os.waitExit([{ pid: victim.pid, startTime: this.members.find((m) => isRecordOf(m, victim))?.startTime ?? -1, label: 'the OOM victim' }], timeouts.killMs)
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
    if (victims.length > 0)
      await this.os.waitExit(
        victims.map((v) => ({ pid: v.pid, startTime: this.members.find((m) => isRecordOf(m, v))?.startTime ?? -1, label: `OOM victim ${v.comm}` })),
        timeouts.killMs,
      )
    await this.os.kernelLogBarrier()
    this.step('kernel log settled')
  }

  /**
   * The kernel prints "Killed process" after it sends SIGKILL, so a victim can be gone before its
   * record is: wait until every dead member's record is in, or the timeout says which is missing.
   */
  async waitForKillRecords(): Promise<void> {
    await this.settle()
    const s = await this.snapshot()
    const missing = () => this.members.filter((m) => livenessFrom(m, s.proc.get(m.pid)) !== 'alive' && !killRecordOf(this.oomEvents(), m))
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
      return { member, liveness: l, alive: l === 'alive', inCgroup: s.procs.get(member.cgroup)?.some((p) => p.pid === member.pid) ?? false, ...(killRecord && { killRecord }) }
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
   * Whether the kernel exposes `c`. A Debian kernel that must have it (it came before this version)
   * and lacks it fails the test; an older one, or a kernel of unknown origin, gets a note.
   */
  has(c: Capability): boolean {
    if (this.capabilities[c]) return true
    const [major, minor] = SINCE[c]
    if (mustHave(this.facts.release, c)) throw new Error(`kernel ${this.facts.release} has no ${c}, which every kernel since ${major}.${minor} has`)
    this.note(`${c}: not exposed by kernel ${this.facts.release} (it came in ${major}.${minor})`)
    return false
  }

  /**
   * Kill-detection latency: from the kernel's timestamp of the last "Killed process" record in this
   * tree to the spec knowing a cgroup is empty, on the kernel log's clock. Needs the marker, so only in a guest.
   */
  killDetection(trace = ''): KillDetection | undefined {
    const kmsg = this.marker && clockOffset(this.log.records, this.marker)
    const empty = this.timeline.find((t) => t.step.endsWith(' empty'))
    const kills = this.oomEvents().flatMap((e) => e.killed.map((k) => k.usec))
    if (!kmsg || !this.clock || !empty || kills.length === 0) return undefined
    const lastKillRecordUs = Math.max(...kills)
    // Our clock -> the machine's -> its kernel log's.
    const emptySeenUs = this.openedUs + empty.atUs + this.clock.offsetUs + kmsg.offsetUs
    const cg = this.cgroups.find((c) => empty.step === `${c.name} empty`)
    const emptiedUs = cg && trace ? lastEmptied(trace, cg.kernelPath) : undefined
    return {
      lastKillRecordUs,
      emptySeenUs: Math.round(emptySeenUs),
      latencyMs: (emptySeenUs - lastKillRecordUs) / 1000,
      clockUncertaintyUs: Math.round(kmsg.uncertaintyUs + this.clock.uncertaintyUs),
      ...(emptiedUs !== undefined && { kernelMs: (emptiedUs - lastKillRecordUs) / 1000, harnessMs: (emptySeenUs - emptiedUs) / 1000 }),
      ...(emptiedUs !== undefined && cg?.emptySeenByMachineUs !== undefined && { machineMs: (cg.emptySeenByMachineUs + kmsg.offsetUs - emptiedUs) / 1000 }),
    }
  }

  /** Everything a doubter needs: the tree, its settings, each process's fate and the kernel's records. */
  async evidence(verdict: { state: string; errors?: string[] }): Promise<Evidence> {
    this.step('evidence')
    const fates = await this.fatesNow(this.oomEvents()).catch(() => [] as Fate[])
    const ops: Op[] = this.cgroups.map((c) => ({ op: 'read', path: join(c.dir, 'memory.events') }))
    const after = await this.os.run(ops).catch(() => [])
    const trace = this.tracing ? await this.os.readTrace().catch(() => '') : ''
    return buildEvidence({
      lab: this,
      verdict,
      fates,
      eventsAfter: this.cgroups.map((_, i) => (after[i]?.ok ? (after[i].value as string) : undefined)),
      shellOutput: await this.shell_?.output().catch(() => undefined),
      killDetection: this.killDetection(trace),
      factsAfter: await this.os.facts().catch(() => undefined),
    })
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

/** Bytes as MiB, as a kernel engineer reads a limit ("419430400" -> "400.0M"; "max" stays). */
function mib(bytes: string | undefined): string {
  if (bytes === undefined) return '?'
  return /^\d+$/.test(bytes) ? `${(Number(bytes) / 2 ** 20).toFixed(1)}M` : bytes
}

/** memory.max's value in bytes, as the kernel reads it back ("192M" -> 201326592; "max" stays). */
export function parseSize(v: string): string | number {
  const m = v.match(/^(\d+)([KMGT]?)$/i)
  if (!m) return v
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase())
}

/** For the one scenario that shows why the workload must not run as root. */
export const ROOT: Credentials = { uid: 0, gid: 0 }

