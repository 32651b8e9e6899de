/**
 * The `runtime` fixture: containers run by real runtimes beside the lab, judged by the lab like its own
 * processes. Kubernetes' layout as the kubelet makes it with the cgroupfs driver (`kubepods/burstable/
 * pod<uid>`, made here as the kubelet would), each container created by runc or crun through conmon as
 * CRI-O runs them, its cgroup made by the runtime from config.json; or an LXC application container
 * (`lxc-execute`) with its cgroup where its config says. Each container's processes are enlisted with
 * their roles, its cgroup adopted, and the runtime's view (state, exit status, each command) kept in the
 * evidence. Disposing of it removes every container and checks that nothing is left: no state under the
 * runtimes' roots, no container cgroup, no conmon or LXC monitor.
 */
import { join, relative } from 'node:path'
import { randomBytes } from 'node:crypto'
import { OpBatch } from '../os/batch.js'
import type { Os } from '../os/os.js'
import type { Lab, Member, Cgroup, CgroupSettings } from './lab.js'
import { parseSize } from './cgroup.js'
import { containerRoles, refreshMember } from './fates.js'
import { timeouts } from './timeouts.js'
import { OciContainer, kernelLacks } from '../runtime/oci-container.js'
import { LxcContainer, absentDirs, lxcExecuteBlocked, lxcLockDirs, removeDirs } from '../runtime/lxc.js'
import { locate, type RuntimeProgram } from '../runtime/programs.js'
import type { OciRuntimeName, OciState } from '../runtime/oci.js'
import type { LxcInfo } from '../runtime/lxc.js'

export type { OciRuntimeName }

/** Where an OCI container sees its gate (a bind mount of the FIFO in its bundle). */
const CONTAINER_GATE = '/oomlab-gate'
export { OCI_RUNTIMES } from '../runtime/oci.js'

/** What a container's PID 1 runs, and what its output says at each stage (RegExp sources). */
export interface Workload {
  /** PID 1's argv; `gate` is a FIFO it reads before it starts its allocating worker, if it has one. */
  args: (gate: string) => string[]
  /** Said once its idle processes run. */
  ready: string
  /** Said once its allocating worker runs, after the gate opened (runStressNg). */
  allocating?: string
}

/**
 * A forking server: PID 1 forks two idle workers, then, once the experiment opens its gate, one worker
 * that allocates past the limit (the article's `stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v`, which
 * forks the allocator itself), and waits for them.
 */
export const FORKING_SERVER: Workload = {
  args: (gate) => ['/bin/sh', '-c', 'sleep 7200 & sleep 7200 & echo workers started; read go < "$1"; stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v & wait', 'server', gate],
  ready: 'workers started',
  allocating: String.raw`vm: started \[\d+\]`,
}

/** A sidecar: PID 1 and two idle workers. */
export const IDLE_SERVER: Workload = {
  args: () => ['/bin/sh', '-c', 'sleep 7200 & sleep 7200 & echo workers started; wait'],
  ready: 'workers started',
}

/**
 * What the kubelet asks of a container's cgroup on cgroup v2 (linux.resources.unified): since Kubernetes
 * 1.28 (PR 117793) memory.oom.group=1, unless `singleProcessOOMKill` (1.32, PR 126096) is set.
 */
export function kubeletUnified(o: { singleProcessOOMKill: boolean }): Record<string, string> | undefined {
  return o.singleProcessOOMKill ? undefined : { 'memory.oom.group': '1' }
}

/** A container as the experiment sees it: its cgroup, its PID 1, its processes, and its runtime's word. */
export class Container {
  /** Its processes as enlisted (PID 1 first), once its workload said it is ready. */
  members: Member[] = []

  constructor(
    private readonly lab: Lab,
    readonly name: string,
    readonly cgroup: Cgroup,
    private readonly workload: Workload,
    /** The FIFO the workload reads before it allocates, as the machine sees it. */
    private readonly gate: string,
    readonly driver: OciContainer | LxcContainer,
  ) {}

  get runtime(): string {
    return this.driver instanceof OciContainer ? this.driver.runtime : 'lxc'
  }

  /** Its PID 1, once enlisted. */
  get init(): Member {
    const m = this.members.find((x) => x.role === 'container init')
    if (!m) throw new Error(`container ${this.name}: its PID 1 is not known yet (call waitForWorkload first)`)
    return m
  }

  /** Waits until its output says its idle processes run (PID 1, its workers), then enlists them with their roles. */
  async waitForWorkload(): Promise<Member[]> {
    await this.waitOutput(this.workload.ready)
    return this.enlist()
  }

  /**
   * Opens the workload's gate: its allocating worker starts (stress-ng, as the article's shell types it);
   * resolves once stress-ng's vm stressor runs, its processes enlisted.
   */
  async runStressNg(): Promise<void> {
    if (!this.workload.allocating) throw new Error(`container ${this.name}'s workload allocates nothing`)
    const opened = await this.lab.os.exec({ argv: ['/bin/sh', '-c', 'echo go > "$1"', 'gate', this.gate], timeoutMs: timeouts.startMs })
    if (opened.exitCode !== 0) throw new Error(`could not open container ${this.name}'s gate ${this.gate}: ${opened.stderr.trim()}`)
    this.lab.step(`container ${this.name}: gate opened`)
    await this.waitOutput(this.workload.allocating)
    await this.enlist()
  }

  private async waitOutput(pattern: string): Promise<void> {
    const expected = `container ${this.name}'s output to say /${pattern}/`
    if (this.driver instanceof LxcContainer) await this.driver.waitOutput(pattern, expected, timeouts.startMs)
    else await this.lab.os.waitText({ path: this.driver.outputFile, pattern, since: 0, expected }, timeouts.startMs)
  }

  private async enlist(): Promise<Member[]> {
    const init = this.driver instanceof OciContainer ? this.driver.pid : (await this.driver.info('workload ready')).pid
    if (!init) throw new Error(`container ${this.name}: its runtime does not say its PID 1`)
    const b = new OpBatch()
    const procs = b.procs(this.cgroup.dir)
    await b.run(this.lab.os)
    const ps = procs.value()
    const { roles, stressorPid } = containerRoles(ps, init)
    const initComm = ps.find((p) => p.pid === init)?.comm ?? '?'
    this.members = ps.map((p) => {
      const m: Member = { pid: p.pid, startTime: p.startTime, role: roles.get(p.pid) ?? 'other', cgroup: this.cgroup.name, comm: p.comm, namespaceInit: { pid: init, comm: initComm } }
      refreshMember(m, p)
      return m
    })
    this.members.sort((a, b) => (a.role === 'container init' ? -1 : b.role === 'container init' ? 1 : a.pid - b.pid))
    this.lab.enlist(this.members, stressorPid)
    this.lab.step(`container ${this.name} running`)
    return this.members
  }

  /** What its runtime says of it now (`state`, or lxc-info), kept in the evidence under `when`. */
  state(when: string): Promise<OciState | LxcInfo | undefined> {
    return this.driver instanceof OciContainer ? this.driver.state(when) : this.driver.info(when)
  }

  /**
   * Waits until its runtime's side has seen its PID 1 end: for runc and crun, conmon's recorded exit
   * status (128 + the signal when one killed it); for LXC, the status its log gives (128 + the signal).
   */
  async waitStopped(): Promise<number> {
    if (this.driver instanceof OciContainer) return this.driver.waitStopped(timeouts.killMs)
    const e = await this.driver.waitStopped(timeouts.killMs)
    return e.signo !== undefined ? 128 + e.signo : (e.status ?? -1)
  }

  /** `runc update` / `crun update` with `resources` (linux.resources, e.g. its unified map). */
  update(resources: object) {
    if (!(this.driver instanceof OciContainer)) throw new Error(`container ${this.name} is LXC's: no OCI update`)
    return this.driver.update(resources)
  }
}

/** A container a runtime was asked for, from the moment it was: what teardown removes and checks. */
interface Asked {
  name: string
  driver: OciContainer | LxcContainer
  /** Its cgroup's directory on the machine. */
  cgroupDir: string
}

export class Runtime {
  private readonly asked: Asked[] = []
  private readonly programs: Record<string, string> = {}
  private pods = 0
  private conmonCgroup: Cgroup | undefined
  private lxcCgroup: Cgroup | undefined
  /** Why lxc-execute cannot run here ('' when it can), once asked. */
  private lxcBlocked: string | undefined
  /** LXC's lock folders this experiment's lxcpath made: removed at teardown. */
  private lxcLocks: string[] | undefined
  private disposed = false

  private constructor(
    readonly lab: Lab,
    /** This experiment's own folder on the machine: runtimes' roots, bundles, the lxcpath. */
    private readonly dir: string,
    /** Drawn on the host (every restored guest draws the same): container ids and pod uids. */
    private readonly nonce: string,
  ) {
    lab.contribute(() => ({ containers: this.asked.map((a) => a.driver.view) }))
  }

  private get os(): Os {
    return this.lab.os
  }

  static async open(lab: Lab): Promise<Runtime> {
    // Beside the workload's folder, in the tree's temp folder: removed with the tree.
    const dir = join(lab.tree.cwd, '..', 'containers')
    const b = new OpBatch()
    const made = b.mkdir(dir)
    await b.run(lab.os)
    made.value()
    return new Runtime(lab, dir, lab.tree.name.split('-').pop() ?? randomBytes(3).toString('hex'))
  }

  private async program(name: RuntimeProgram): Promise<string> {
    if (!this.programs[name]) Object.assign(this.programs, await locate(this.os, [name]))
    return this.programs[name]!
  }

  /** A FIFO the workload's user may read: a workload waits on it before it allocates. */
  private async makeGate(path: string): Promise<string> {
    const r = await this.os.exec({ argv: ['mkfifo', '-m', '0644', path], timeoutMs: 10_000 })
    if (r.exitCode !== 0) throw new Error(`mkfifo ${path}: ${r.stderr.trim()}`)
    return path
  }

  /** A path from the cgroup2 mount's root, as runtimes' cgroupfs drivers and LXC's config take it. */
  private fromMount(dir: string): string {
    const mount = this.lab.facts.cgroup2?.mountPoint ?? '/sys/fs/cgroup'
    return `/${relative(mount, dir)}`
  }

  /** A pod's cgroup as the kubelet makes it with the cgroupfs driver: kubepods/burstable/pod<uid>, with `settings` (a pod-level memory.max). */
  async pod(settings: CgroupSettings = {}): Promise<Cgroup> {
    if (this.pods++ === 0) {
      await this.lab.cgroup('kubepods')
      await this.lab.cgroup('kubepods/burstable')
    }
    return this.lab.cgroup(`kubepods/burstable/pod${this.nonce}-${this.pods}`, settings)
  }

  /**
   * A container of `pod` run by runc or crun through conmon: created from config.json (memory limit, the
   * kubelet's unified map), its cgroup adopted before it starts, then started.
   */
  async oci(runtime: OciRuntimeName, pod: Cgroup, name: string, o: { workload: Workload; memoryLimit?: string; unified?: Record<string, string> }): Promise<Container> {
    const programs = { runtime: await this.program(runtime), conmon: await this.program('conmon') }
    // conmon, the containers' monitor, in a cgroup of the tree's own (CRI-O's conmon_cgroup): teardown finds it there.
    this.conmonCgroup ??= await this.lab.cgroup('conmon')
    const id = `${name}-${this.nonce}`
    const dir = join(this.dir, id)
    const root = join(this.dir, `${runtime}-root`)
    const b = new OpBatch()
    const made = [b.mkdir(dir), b.mkdir(root)]
    await b.run(this.os)
    made[0]!.value()
    const cgroupName = `${pod.name}/${id}`
    const limit = o.memoryLimit !== undefined ? Number(parseSize(o.memoryLimit)) : undefined
    const gate = await this.makeGate(join(dir, 'gate'))
    const spec = { id, args: o.workload.args(CONTAINER_GATE), user: this.lab.user, cgroupsPath: this.fromMount(join(pod.dir, id)), ...(limit !== undefined && { memoryLimit: limit }), ...(o.unified && { unified: o.unified }), files: { [CONTAINER_GATE]: gate } }
    const driver = new OciContainer(this.os, runtime, programs, root, dir, spec, cgroupName)
    // Known before it is created: a failed create is in the evidence with the runtime's words, and torn down.
    this.asked.push({ name, driver, cgroupDir: join(pod.dir, id) })
    await driver.create(this.conmonCgroup.dir).catch((err: Error) => {
      const lacks = kernelLacks(err.message)
      if (lacks) this.lab.unsupported(`${runtime} cannot create a container on kernel ${this.lab.facts.release}: it lacks ${lacks}`)
      throw err
    })
    const c = new Container(this.lab, name, await this.lab.adopt(cgroupName), o.workload, gate, driver)
    await driver.state('created')
    await driver.start()
    this.lab.step(`container ${name} started by ${runtime}`)
    return c
  }

  /**
   * An LXC application container: `lxc-execute` runs the workload with LXC's init as PID 1, its cgroup
   * `<parent>/<name>` made by LXC with the config's `lxc.cgroup2.*` settings (memory.max, memory.oom.group).
   */
  async lxc(parent: Cgroup, name: string, o: { workload: Workload; cgroup: Record<string, string> }): Promise<Container> {
    const programs = { execute: await this.program('lxc-execute'), info: await this.program('lxc-info'), stop: await this.program('lxc-stop') }
    this.lxcBlocked ??= await lxcExecuteBlocked(this.os, programs.execute).then((why) => why ?? '')
    if (this.lxcBlocked) this.lab.unsupported(`${this.lxcBlocked}; kernel ${this.lab.facts.release}`)
    const lxcpath = join(this.dir, 'lxc')
    if (this.lxcLocks === undefined) {
      const b = new OpBatch()
      const made = b.mkdir(lxcpath)
      await b.run(this.os)
      made.value()
      // The container's processes see the machine's own file system, as its user: the tree's temp folder
      // (root's, 0700) must let them through to their working folder, their output and their gate.
      const opened = await this.os.exec({ argv: ['chmod', '0711', join(this.lab.tree.cwd, '..')], timeoutMs: 10_000 })
      if (opened.exitCode !== 0) throw new Error(`chmod 0711 ${join(this.lab.tree.cwd, '..')}: ${opened.stderr.trim()}`)
      this.lxcLocks = await absentDirs(this.os, lxcLockDirs(lxcpath))
    }
    // The container sees the machine's own file system: its gate is where the machine has it.
    const gate = await this.makeGate(join(this.dir, `${name}.gate`))
    const cgroupName = `${parent.name}/${name}`
    const spec = {
      name,
      args: o.workload.args(gate),
      user: this.lab.user,
      cwd: this.lab.tree.cwd,
      cgroupDir: this.fromMount(join(parent.dir, name)),
      monitorDir: this.fromMount(join(this.lab.root.dir, `lxc.monitor.${name}`)),
      monitorPivot: this.fromMount(this.lab.root.dir),
      cgroup: o.cgroup,
    }
    // lxc-execute starts in a cgroup of the tree's own, as conmon does: its monitor then moves where its config says.
    this.lxcCgroup ??= await this.lab.cgroup('lxc-execute')
    const driver = new LxcContainer(this.os, programs, lxcpath, spec, cgroupName)
    this.asked.push({ name, driver, cgroupDir: join(parent.dir, name) })
    await driver.start(this.lxcCgroup.dir, this.lab.tree.cwd)
    // lxc-execute makes the container's cgroup once it runs: by the time the workload speaks, it is there.
    await driver.waitOutput(o.workload.ready, `container ${name}'s output to say /${o.workload.ready}/`, timeouts.startMs)
    const c = new Container(this.lab, name, await this.lab.adopt(cgroupName), o.workload, gate, driver)
    this.lab.step(`container ${name} started by lxc-execute`)
    return c
  }

  /**
   * Removes every container (the newest first) and checks what is left: a runtime's state, a container's
   * cgroup, a conmon or an LXC monitor, LXC's lock folder. The lab's evidence is read first, while the
   * containers' cgroups are still there. Whatever is left fails the test, named; the lab's teardown then
   * removes the tree anyway.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return
    this.disposed = true
    await this.lab.capture().catch(() => undefined)
    const left: string[] = []
    for (const a of [...this.asked].reverse()) left.push(...(await a.driver.remove(timeouts.killMs).catch((err: unknown) => [`container ${a.name}: ${(err as Error).message}`])))
    if (this.lxcLocks) left.push(...(await removeDirs(this.os, this.lxcLocks)).map((d) => `LXC's lock folder ${d}`))
    left.push(...(await this.leftovers()))
    if (left.length > 0) throw new Error(`the container runtimes left: ${left.join('; ')}`)
  }

  /** Every container's cgroup, and the state each runtime could have kept in its default root. */
  private async leftovers(): Promise<string[]> {
    const b = new OpBatch()
    const checks = this.asked.flatMap((a) => [
      { p: a.cgroupDir, what: `the cgroup of container ${a.name}` },
      ...(a.driver instanceof OciContainer ? [{ p: join('/run', a.driver.runtime, a.driver.id), what: `${a.driver.runtime}'s state of ${a.name} in its default root` }] : []),
    ]).map((x) => ({ ...x, there: b.exists(x.p) }))
    const monitors = this.asked.filter((a) => a.driver instanceof LxcContainer).map((a) => ({ a, procs: b.procs(join(this.lab.root.dir, `lxc.monitor.${a.name}`)) }))
    await b.run(this.os)
    const left = checks.filter((x) => x.there.valueOrUndefined() === true).map((x) => `${x.what} (${x.p})`)
    for (const m of monitors) for (const p of m.procs.valueOrUndefined() ?? []) left.push(`LXC's monitor of ${m.a.name}: pid ${p.pid} (${p.comm})`)
    return left
  }
}
