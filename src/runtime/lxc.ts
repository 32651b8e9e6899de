/**
 * An LXC application container, as the article's readers make one: `lxc-execute` runs a command in new
 * namespaces with LXC's init as PID 1, the guest's (or host's) own root file system, and the cgroup
 * settings of its config (`lxc.cgroup2.memory.max`, `lxc.cgroup2.memory.oom.group`). It runs in the
 * foreground as the experiment's child, in a folder of the experiment's own (`-P`), its cgroup where
 * `lxc.cgroup.dir.container` says (inside the experiment's tree). `lxc-info` gives LXC's view; LXC's
 * log says how its init ended.
 */
import { join } from 'node:path'
import { OpBatch } from '../os/batch.js'
import type { Os } from '../os/os.js'
import type { Credentials } from '../proc/spawn.js'
import { recordOf, type CommandRecord } from './programs.js'

export interface LxcContainerSpec {
  name: string
  /** The command its init runs. */
  args: string[]
  user: Credentials
  /** Its init's working directory: one its user may write (stress-ng's temp path). */
  cwd: string
  /** Its cgroup, from the cgroup2 mount's root (lxc.cgroup.dir.container). */
  cgroupDir: string
  /** Where LXC's monitor process goes (lxc.cgroup.dir.monitor): inside the tree too, so teardown finds it. */
  monitorDir: string
  /** Where the monitor goes when its container is gone (lxc.cgroup.dir.monitor.pivot: LXC makes lxc.pivot below it): the tree. */
  monitorPivot: string
  /** lxc.cgroup2.<key> = value: memory.max, memory.oom.group, ... as the article's readers write them. */
  cgroup: Record<string, string>
}

/** The config lines found to work in an initramfs guest and on a host: no rootfs, no network, no console. */
export function lxcConfig(spec: LxcContainerSpec): string {
  const lines = [
    // The guest has no AppArmor policy loaded; a host's would confine nothing here either.
    'lxc.apparmor.profile = unconfined',
    // The host's network namespace is not needed, and lxc-net is not there to make a bridge.
    'lxc.net.0.type = empty',
    // Without these LXC fails with "Failed to allocate console" where there is no devpts to give.
    'lxc.console.path = none',
    'lxc.tty.max = 0',
    'lxc.pty.max = 0',
    // A /proc of the container's own PID namespace: stress-ng writes its workers' oom_score_adj there.
    'lxc.mount.auto = proc:mixed',
    `lxc.init.uid = ${spec.user.uid}`,
    `lxc.init.gid = ${spec.user.gid}`,
    `lxc.init.cwd = ${spec.cwd}`,
    `lxc.cgroup.dir.container = ${spec.cgroupDir.replace(/^\//, '')}`,
    `lxc.cgroup.dir.monitor = ${spec.monitorDir.replace(/^\//, '')}`,
    // Where the monitor moves before it removes its own cgroup (LXC makes lxc.pivot below it): by default the root.
    `lxc.cgroup.dir.monitor.pivot = ${spec.monitorPivot.replace(/^\//, '')}`,
    ...Object.entries(spec.cgroup).map(([k, v]) => `lxc.cgroup2.${k} = ${v}`),
  ]
  return `${lines.join('\n')}\n`
}

/** What `lxc-info -n NAME` prints: "State: RUNNING", "PID: 125"; undefined fields once it is gone. */
export interface LxcInfo {
  state?: string
  pid?: number
  /** What lxc-info said when the container does not exist (an application container is gone once its init ends). */
  error?: string
}

export function parseLxcInfo(text: string, exitCode: number | null): LxcInfo {
  if (exitCode !== 0) return { error: text.trim().split('\n').slice(-1)[0] ?? `exit ${exitCode}` }
  const state = text.match(/^State:\s+(\S+)/m)?.[1]
  const pid = text.match(/^PID:\s+(\d+)/m)?.[1]
  return { ...(state !== undefined && { state }), ...(pid !== undefined && { pid: Number(pid) }) }
}

/** LXC's word on how the container's init ended, from its log: "Child <125> ended on signal Killed(9)". */
export function lxcEnding(log: string): { pid: number; signal?: string; signo?: number; status?: number } | undefined {
  const m = log.match(/Child <(\d+)> ended on signal (\w+)\((\d+)\)/)
  if (m) return { pid: Number(m[1]), signal: m[2]!, signo: Number(m[3]) }
  const e = log.match(/Child <(\d+)> ended on error \((\d+)\)/)
  return e ? { pid: Number(e[1]), status: Number(e[2]) } : undefined
}

export interface LxcPrograms {
  execute: string
  info: string
  stop: string
}

export interface LxcView {
  runtime: 'lxc'
  version: string
  name: string
  cgroup: string
  /** The config file lxc-execute was given. */
  config: string
  infos: { when: string; info: LxcInfo }[]
  /** How LXC says the init ended, from its log. */
  ending?: ReturnType<typeof lxcEnding>
  commands: CommandRecord[]
  /** LXC's log, at INFO level. */
  log?: string
  /** The container's output (lxc-execute's, in the foreground). */
  output?: string
}

export class LxcContainer {
  readonly view: LxcView
  private removed = false
  /** lxc-execute, in the foreground: LXC's monitor of the container, and the one whose output is the container's. */
  private monitor: { id: string; pid: number; startTime: number } | undefined

  constructor(
    private readonly os: Os,
    private readonly programs: LxcPrograms,
    /** lxc-execute's -P: this experiment's own. */
    readonly lxcpath: string,
    readonly spec: LxcContainerSpec,
    cgroupName: string,
  ) {
    this.view = { runtime: 'lxc', version: '?', name: spec.name, cgroup: cgroupName, config: lxcConfig(spec), infos: [], commands: [] }
  }

  get name(): string {
    return this.spec.name
  }

  private get logFile(): string {
    return join(this.lxcpath, `${this.spec.name}.log`)
  }

  private async exec(argv: string[], timeoutMs = 30_000): Promise<CommandRecord> {
    const rec = recordOf(argv, await this.os.exec({ argv, timeoutMs }))
    this.view.commands.push(rec)
    return rec
  }

  /**
   * Writes its config and runs lxc-execute in the foreground, as root, from the cgroup `from` (LXC then
   * moves its monitor to lxc.cgroup.dir.monitor): the container's output is lxc-execute's, and its end is
   * lxc-execute's exit. (Detached, `-d`, it does not come back on a 4.19 kernel.)
   */
  async start(from: string, cwd: string): Promise<void> {
    this.view.version = (await this.exec([this.programs.execute, '--version'], 10_000)).stdout?.trim() ?? '?'
    const conf = join(this.lxcpath, `${this.name}.conf`)
    const b = new OpBatch()
    const written = b.write(conf, this.view.config)
    await b.run(this.os)
    written.value()
    const argv = [this.programs.execute, '-n', this.name, '-P', this.lxcpath, '-f', conf, '-o', this.logFile, '-l', 'INFO', '--', ...this.spec.args]
    const s = await this.os.spawn({ argv, cgroup: from, user: { uid: 0, gid: 0 }, cwd, stdin: 'ignore', timeoutMs: 20_000 })
    this.monitor = { id: s.id, pid: s.pid, startTime: s.startTime }
    this.view.commands.push({ argv, exitCode: null, ms: 0 })
  }

  /** Waits for `pattern` (a RegExp source) in the container's output. */
  async waitOutput(pattern: string, expected: string, timeoutMs: number): Promise<void> {
    if (!this.monitor) throw new Error(`LXC container ${this.name} was not started`)
    await this.os.waitOutput(this.monitor.id, pattern, 0, expected, timeoutMs)
  }

  /** lxc-info: LXC's view of the container, asked of its monitor; one that does not answer is said with LXC's last word. */
  async info(when: string): Promise<LxcInfo> {
    const rec = await this.exec([this.programs.info, '-n', this.name, '-P', this.lxcpath], 10_000).catch(async (err: Error) => {
      const last = (await this.readLog().catch(() => '')).trim().split('\n').at(-1) ?? ''
      throw new Error(`${err.message}: LXC's monitor of ${this.name} does not answer; its log ends: ${last.replace(/^\S+ \S+ \S+ +/, '')}`)
    })
    const info = parseLxcInfo(`${rec.stdout ?? ''}\n${rec.stderr ?? ''}`, rec.exitCode)
    this.view.infos.push({ when, info })
    return info
  }

  /** Waits until lxc-execute has seen the container's init end and exited; returns what LXC's log says of that end. */
  async waitStopped(timeoutMs: number): Promise<NonNullable<LxcView['ending']>> {
    if (this.monitor) await this.os.waitExit([{ ...this.monitor, label: `lxc-execute of container ${this.name}` }], timeoutMs)
    const ending = lxcEnding(await this.readLog())
    if (!ending) throw new Error(`LXC's log of container ${this.name} does not say how its init ended (${this.logFile})`)
    this.view.ending = ending
    return ending
  }

  private async readLog(): Promise<string> {
    const b = new OpBatch()
    const log = b.read(this.logFile)
    await b.run(this.os)
    return log.valueOrUndefined() ?? ''
  }

  /** Stops what is left (lxc-stop -k), waits for lxc-execute to end, and says what is left. */
  async remove(timeoutMs: number): Promise<string[]> {
    if (this.removed) return []
    this.removed = true
    const info = await this.info('at teardown').catch(() => ({}) as LxcInfo)
    if (info.state !== undefined) await this.exec([this.programs.stop, '-k', '-n', this.name, '-P', this.lxcpath]).catch(() => undefined)
    const ended = this.monitor ? await this.os.waitExit([{ ...this.monitor, label: `lxc-execute of container ${this.name}` }], timeoutMs).then(() => true, () => false) : true
    this.view.log = (await this.readLog().catch(() => '')).slice(-8000)
    if (this.monitor) this.view.output = (await this.os.output(this.monitor.id).catch(() => '')).slice(-8000)
    const after = await this.info('after teardown').catch(() => ({}) as LxcInfo)
    return [
      ...(after.state !== undefined ? [`LXC container ${this.name} in ${this.lxcpath} (${after.state})`] : []),
      ...(!ended ? [`lxc-execute of container ${this.name} (pid ${this.monitor!.pid})`] : []),
    ]
  }
}

/**
 * Why lxc-execute cannot run an application container on this machine's kernel, if it cannot. Since LXC
 * 4.0.10 its init is called, not exec'd (lxc/lxc PR 3885), so it keeps every fd lxc-execute had until it
 * closes them with close_range (Linux 5.9); without that syscall its fallback (`close_inherited`) stops after
 * fd 0, and the init holds LXC's start socket: the monitor waits on it until the container's init ends, and
 * answers neither lxc-info nor lxc-stop meanwhile (lxc/lxc issue 4112; seen on 4.19, its init's fds listed).
 * The kernel's symbols say whether it has close_range; a kernel that lists none is not judged.
 */
export async function lxcExecuteBlocked(os: Os, execute: string): Promise<string | undefined> {
  const r = await os.exec({ argv: ['/bin/sh', '-c', '"$1" --version; grep -c close_range /proc/kallsyms', 'probe', execute], timeoutMs: 10_000 })
  const [version = '', symbols = ''] = r.stdout.trim().split('\n')
  const [major = 0, minor = 0, patch = 0] = version.split('.').map(Number)
  const callsInit = major > 4 || (major === 4 && (minor > 0 || patch >= 10))
  if (!callsInit || symbols.trim() !== '0') return undefined
  return `LXC ${version}'s lxc-execute needs close_range (Linux 5.9), which this kernel lacks: its init then keeps LXC's start socket, and LXC's monitor answers nothing (lxc-info, lxc-stop) until the container's init ends (lxc/lxc issue 4112)`
}

/** LXC's lock folder of an lxcpath, where lxc-execute makes it (/run/lxc/lock/<lxcpath>), and its parents up to /run/lxc/lock. */
export function lxcLockDirs(lxcpath: string): string[] {
  const base = '/run/lxc/lock'
  const dirs: string[] = []
  for (let d = join(base, lxcpath); d.startsWith(`${base}/`); d = d.slice(0, d.lastIndexOf('/'))) dirs.push(d)
  return dirs
}

/** Those of `dirs` that do not exist now: what LXC will make, and teardown may remove. */
export async function absentDirs(os: Os, dirs: string[]): Promise<string[]> {
  const b = new OpBatch()
  const there = dirs.map((d) => ({ d, e: b.exists(d) }))
  await b.run(os)
  return there.filter((x) => x.e.valueOrUndefined() === false).map((x) => x.d)
}

/** Removes folders (deepest first) that LXC made; one that is not empty is named. */
export async function removeDirs(os: Os, dirs: string[]): Promise<string[]> {
  const b = new OpBatch()
  const removed = dirs.map((d) => ({ d, r: b.rmdir(d) }))
  await b.run(os)
  return removed.flatMap(({ d, r }) => {
    const x = r.result()
    return x.ok ? [] : [`${d} (${x.error})`]
  })
}
