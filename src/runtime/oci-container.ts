/**
 * One OCI container on a machine, as CRI-O runs one: conmon (the container's monitor, its init's
 * subreaper, which records the exit status) asks runc or crun to create it from a bundle, the runtime
 * starts it, and `state` says what the runtime thinks of it. Each runtime keeps its state under a root
 * of this experiment's own (`--root`), never the machine's /run/runc or /run/crun. Removing it kills
 * what is left, deletes it from the runtime (its state and its cgroup), and checks that nothing is left.
 */
import { join } from 'node:path'
import { OpBatch } from '../os/batch.js'
import type { Os } from '../os/os.js'
import { ociConfig, parseOciState, ROOTFS_FROM_MACHINE, type OciContainerSpec, type OciRuntimeName, type OciState } from './oci.js'
import { check, recordOf, type CommandRecord } from './programs.js'

/** Makes the rootfs ($1): each folder of / named after it bound (says "bind D"), each symlink copied; /tmp 1777. */
const MAKE_ROOTFS = [
  'root=$1; shift',
  'mkdir -p "$root"',
  'for d in "$@"; do',
  '  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"',
  '  elif [ -d "/$d" ]; then mkdir "$root/$d"; echo "bind $d"; fi',
  'done',
  'mkdir "$root/proc" "$root/dev" "$root/tmp"',
  'chmod 1777 "$root/tmp"',
].join('\n')

/**
 * Runs conmon ($3...) in the cgroup $2, with a sync pipe on fd 3 and its own output in $1; prints conmon's
 * one sync message: {"data": PID} once the runtime has created the container, {"data": -1, "message": ...}
 * when it could not.
 */
const CONMON_CREATE = 'log=$1; echo $$ > "$2/cgroup.procs" || exit 97; shift 2; _OCI_SYNCPIPE=3 "$@" 3>&1 >"$log" 2>&1 | head -n 1'

export interface OciPrograms {
  runtime: string
  conmon: string
}

/** What the evidence keeps of a container: the runtime's own view beside the kernel's. */
export interface ContainerView {
  runtime: string
  version: string
  id: string
  /** Its cgroup, by the experiment's name for it. */
  cgroup: string
  /** What its config.json asked of the cgroup (memory limit, unified). */
  resources: Record<string, unknown>
  /** `state` as the runtime printed it, at each moment the experiment asked. */
  states: { when: string; state?: OciState; error?: string }[]
  /** The exit status conmon recorded for the container's PID 1 (128 + signal when killed by one). */
  exitStatus?: number
  /** Every runtime command the experiment ran, with its output. */
  commands: CommandRecord[]
  /** The container's stdout and stderr, as conmon logged them. */
  output?: string
}

export class OciContainer {
  readonly view: ContainerView
  /** conmon's PID and start time, once it runs. */
  private conmon: { pid: number; startTime: number } | undefined
  private removed = false

  constructor(
    private readonly os: Os,
    readonly runtime: OciRuntimeName,
    private readonly programs: OciPrograms,
    /** The runtime's state root, this experiment's own. */
    readonly root: string,
    /** The bundle's folder: config.json, rootfs, conmon's files. */
    readonly dir: string,
    readonly spec: OciContainerSpec,
    cgroupName: string,
  ) {
    this.view = { runtime, version: '?', id: spec.id, cgroup: cgroupName, resources: ociResources(spec), states: [], commands: [] }
  }

  get id(): string {
    return this.spec.id
  }

  /** The container's stdout and stderr, as conmon logs them (k8s-file: time, stream, tag, line). */
  get outputFile(): string {
    return join(this.dir, 'output.log')
  }

  /** The container's PID 1 on the machine, as conmon learned it from the runtime. */
  pid = 0

  /**
   * Writes the bundle (its rootfs, config.json), and has conmon, in the cgroup `monitorCgroup`, ask the
   * runtime to create the container (not started yet).
   */
  async create(monitorCgroup: string): Promise<void> {
    const version = await this.exec([this.programs.runtime, '--version'], { timeoutMs: 10_000 })
    this.view.version = version.stdout?.split('\n')[0]?.trim() ?? '?'
    const made = check(await this.exec(['/bin/sh', '-c', MAKE_ROOTFS, 'rootfs', join(this.dir, 'rootfs'), ...ROOTFS_FROM_MACHINE], { timeoutMs: 10_000 }))
    const binds = (made.stdout ?? '').split('\n').flatMap((l) => (l.startsWith('bind ') ? [l.slice(5)] : []))
    const b = new OpBatch()
    const written = b.write(join(this.dir, 'config.json'), `${JSON.stringify(ociConfig(this.spec, { binds }), null, 2)}\n`)
    // conmon makes its attach socket's folder in this one, and says nothing when it is missing.
    const folders = ['exits', 's'].map((f) => b.mkdir(join(this.dir, f)))
    await b.run(this.os)
    written.value()
    for (const f of folders) f.value()
    await this.createWithConmon(monitorCgroup)
  }

  /** Runs a command on the machine; the view keeps it. */
  private async exec(argv: string[], o: { input?: string; timeoutMs?: number } = {}): Promise<CommandRecord> {
    const rec = recordOf(argv, await this.os.exec({ argv, timeoutMs: o.timeoutMs ?? 30_000, ...(o.input !== undefined && { input: o.input }) }))
    this.view.commands.push(rec)
    return rec
  }

  /** A command of the runtime, on this experiment's state root. */
  private run(args: string[], o: { input?: string; timeoutMs?: number } = {}): Promise<CommandRecord> {
    return this.exec([this.programs.runtime, '--root', this.root, ...args], o)
  }

  private async createWithConmon(cgroup: string): Promise<void> {
    const d = (f: string) => join(this.dir, f)
    const argv = [
      this.programs.conmon,
      '--api-version', '1',
      '-c', this.id, '-u', this.id, '-n', this.id,
      '-r', this.programs.runtime, '--runtime-arg', `--root=${this.root}`,
      '-b', this.dir,
      '-p', d('pid'), '-P', d('conmon.pid'),
      '--exit-dir', d('exits'),
      '-l', `k8s-file:${d('output.log')}`,
      '--socket-dir-path', d('s'),
      // The guest's root is an initramfs, which pivot_root cannot leave.
      '--no-pivot',
      '--log-level', 'info',
    ]
    const rec = await this.exec(['/bin/sh', '-c', CONMON_CREATE, 'conmon-create', d('conmon.log'), cgroup, ...argv], { timeoutMs: 60_000 })
    const b = new OpBatch()
    const conmonPid = b.read(d('conmon.pid'))
    const conmonLog = b.read(d('conmon.log'))
    await b.run(this.os)
    const pidText = conmonPid.valueOrUndefined()?.trim()
    if (pidText && /^\d+$/.test(pidText)) {
      const [info] = await this.os.run([{ op: 'proc', pid: Number(pidText) }])
      const p = info?.ok ? (info.value as { startTime: number } | null) : null
      if (p) this.conmon = { pid: Number(pidText), startTime: p.startTime }
    }
    let sync: { data?: number; message?: string } = {}
    try {
      sync = JSON.parse(rec.stdout ?? '{}') as typeof sync
    } catch {
      /* said below */
    }
    if (typeof sync.data !== 'number' || sync.data <= 0) {
      const why = sync.message ?? (conmonLog.valueOrUndefined()?.trim().split('\n').slice(-3).join(' | ') || rec.stderr || `conmon said nothing (exit ${rec.exitCode})`)
      throw new Error(`${this.runtime} could not create container ${this.id} (through conmon): ${why}`)
    }
    this.pid = sync.data
  }

  async start(): Promise<void> {
    check(await this.run(['start', this.id]))
  }

  /** The runtime's `state`, kept in the view under `when`. */
  async state(when: string): Promise<OciState | undefined> {
    const rec = await this.run(['state', this.id], { timeoutMs: 10_000 })
    try {
      const state = parseOciState(rec.stdout ?? '')
      this.view.states.push({ when, state })
      return state
    } catch {
      this.view.states.push({ when, error: (rec.stderr || rec.stdout || `exit ${rec.exitCode}`).split('\n').slice(-1)[0]! })
      return undefined
    }
  }

  /**
   * `runtime update --resources FILE` with `resources` (the OCI spec's linux.resources) in a file of the
   * bundle: crun reads `-` as /dev/stdin, which a guest's devtmpfs has no link for.
   */
  async update(resources: object): Promise<CommandRecord> {
    const file = join(this.dir, `resources-${this.view.commands.length}.json`)
    const b = new OpBatch()
    const w = b.write(file, `${JSON.stringify(resources)}\n`)
    await b.run(this.os)
    w.value()
    return this.run(['update', '--resources', file, this.id])
  }

  /**
   * Waits until conmon has seen the container's PID 1 end and recorded its exit status (conmon exits
   * then); returns that status. conmon is not our child: its exit is seen in /proc.
   */
  async waitStopped(timeoutMs: number): Promise<number> {
    if (this.conmon) await this.os.waitExit([{ ...this.conmon, label: `conmon of container ${this.id}` }], timeoutMs)
    const b = new OpBatch()
    const exit = b.read(join(this.dir, 'exits', this.id))
    await b.run(this.os)
    const text = exit.valueOrUndefined()?.trim()
    if (text === undefined || !/^-?\d+$/.test(text)) throw new Error(`conmon recorded no exit status for container ${this.id} (${join(this.dir, 'exits', this.id)}: ${text ?? 'absent'})`)
    this.view.exitStatus = Number(text)
    return this.view.exitStatus
  }

  /** The container's output as conmon logged it (k8s-file: time, stream, tag, line). */
  async output(): Promise<string> {
    const b = new OpBatch()
    const log = b.read(join(this.dir, 'output.log'))
    await b.run(this.os)
    return log.valueOrUndefined() ?? ''
  }

  /**
   * Kills what is left of the container, deletes it from its runtime (its state and cgroup go) and
   * checks: no state under the runtime's root, no conmon. Safe to call twice; runs on any failure.
   */
  async remove(timeoutMs: number): Promise<string[]> {
    if (this.removed) return []
    this.removed = true
    const out = await this.output().catch(() => '')
    if (out) this.view.output = out.slice(-8000)
    const st = await this.state('at teardown').catch(() => undefined)
    if (st && st.status !== 'stopped') await this.run(['kill', this.id, 'KILL']).catch(() => undefined)
    if (this.conmon) await this.os.waitExit([{ ...this.conmon, label: `conmon of container ${this.id}` }], timeoutMs).catch(() => undefined)
    await this.run(['delete', '--force', this.id]).catch(() => undefined)
    return this.leftovers()
  }

  /** What is left of it on the machine: its state folder, a live conmon. */
  async leftovers(): Promise<string[]> {
    const left: string[] = []
    const b = new OpBatch()
    const state = b.exists(join(this.root, this.id))
    const conmon = this.conmon ? b.proc(this.conmon.pid) : undefined
    await b.run(this.os)
    if (state.valueOrUndefined()) left.push(`${this.runtime}'s state of container ${this.id} in ${join(this.root, this.id)}`)
    const c = conmon?.valueOrUndefined()
    if (c && this.conmon && c.startTime === this.conmon.startTime && c.state !== 'Z') left.push(`conmon of container ${this.id} (pid ${this.conmon.pid})`)
    return left
  }
}

/**
 * What a runtime's failure to create a container says of the kernel, when it says the kernel lacks
 * something it needs: the feature and its config option (a kernel built without them cannot run it).
 */
const KERNEL_LACKS: { said: RegExp; lacks: string }[] = [
  { said: /bpf_prog_query\(BPF_CGROUP_DEVICE\) failed: function not implemented/, lacks: 'BPF programs on cgroups (CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF), which runc needs to control devices on cgroup v2' },
  { said: /\/proc\/self\/setgroups`?: No such file or directory/, lacks: 'user namespaces (CONFIG_USER_NS): crun writes /proc/self/setgroups' },
]

/** The kernel feature a runtime's message says is missing, if it says so. */
export function kernelLacks(message: string): string | undefined {
  return KERNEL_LACKS.find((k) => k.said.test(message))?.lacks
}

function ociResources(spec: OciContainerSpec): Record<string, unknown> {
  return { ...(spec.memoryLimit !== undefined && { memory: { limit: spec.memoryLimit, swap: spec.memoryLimit } }), ...(spec.unified !== undefined && { unified: spec.unified }) }
}
