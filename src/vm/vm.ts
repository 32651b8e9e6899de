/**
 * A guest's lifecycle as a disposable object: booted, or restored from a saved state (whole, or paused
 * here and resumed by another process: src/vm/ahead.ts), saved, and disposed of. The caller talks to
 * the guest while it runs, over a QMP socket and a byte stream to its agent. QEMU dies with this
 * process (pdeathsig) and with dispose(); a signal or exit stops every live guest: nothing is left behind.
 */
import type { Socket } from 'node:net'
import { open, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { rmSync } from 'node:fs'
import type { DirectoryResult } from 'tmp-promise'
import { endBySignal } from '../util/signals.js'
import { ConsoleRecord, explainSilence } from './qemu/console.js'
import { machineArgs, type MachineSpec } from './qemu/command.js'
import { spawnQemu, setsidPath, type QemuProcess, type QemuSinks } from './qemu/process.js'
import { shellQuote, waitMigration, waitStreamEnd } from './qemu/migration.js'
import { QmpClient, connectUnix } from './qemu/qmp.js'
import { ownedTempDir } from './owned-dirs.js'
import { setprivPath } from '../proc/spawn.js'

export type { MachineSpec } from './qemu/command.js'
export type { QemuProcess, QemuSinks } from './qemu/process.js'

export interface VmHooks {
  onConsole?: (line: string) => void
  /** Aborting stops QEMU (SIGKILL); a pending boot, restore or save then fails. */
  signal?: AbortSignal
}

const SAVE_TIMEOUT_MS = 120_000
/** After QEMU says the save completed, how long its `cat` gets to write the pipe's last bytes. */
const STREAM_END_MS = 5_000
const POLL_MS = 25
/** After a failed step, how long QEMU gets to exit and say why before it is killed. */
const EXIT_GRACE_MS = 500
/** QEMU's own stderr lines kept: a failed save's reason is among the last. */
const STDERR_LINES = 30

/** Guests of this process not yet disposed of: a signal or exit stops them. */
const live = new Set<GuestVm>()
let teardownInstalled = false

/** SIGINT, SIGTERM, SIGHUP and exit stop every live guest of this process and remove its folder. */
function installVmTeardown(): void {
  if (teardownInstalled) return
  teardownInstalled = true
  const all = () => {
    for (const vm of live) vm.teardownSync()
    live.clear()
  }
  process.on('exit', all)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(sig, () => {
      all()
      endBySignal(sig)
    })
}

/** Where a guest's QEMU comes from: started here on these arguments, or a process already running. */
type Start = { args: string[]; fd3?: number } | { process: (sinks: QemuSinks) => QemuProcess }

export class GuestVm implements AsyncDisposable {
  private readonly proc: QemuProcess
  /** Its QEMU is another process's, which restored it ahead (src/vm/ahead.ts): so are its folder and its death. */
  private readonly heldElsewhere: boolean
  private readonly console = new ConsoleRecord()
  private exitCode: number | string | undefined
  private gone = false
  /** Set when the harness stops QEMU (quit, dispose): not the guest's failure. */
  private stopping = false
  private disposing: Promise<void> | undefined
  private onAbort = () => void this.kill()
  private qmpClient: QmpClient | undefined
  private agentSocket: Socket | undefined
  /** Lines QEMU or its `exec:` helper (sh, cat) wrote to stderr: a failed save's reason is there. */
  private readonly stderrLines: string[] = []
  readonly exited: Promise<void>

  private constructor(
    readonly spec: MachineSpec,
    private readonly work: Pick<DirectoryResult, 'path' | 'cleanup'>,
    setpriv: string,
    start: Start,
    private readonly hooks: VmHooks,
  ) {
    const sinks: QemuSinks = {
      out: (l) => this.onLine(l),
      err: (l) => {
        this.stderrLines.push(l)
        if (this.stderrLines.length > STDERR_LINES) this.stderrLines.shift()
        this.onLine(l)
      },
    }
    this.heldElsewhere = 'process' in start
    if ('process' in start) this.proc = start.process(sinks)
    else {
      const args = [...machineArgs(spec), '-chardev', `socket,id=agent,path=${this.agentPath},server=on,wait=off`, '-qmp', `unix:${this.qmpPath},server=on,wait=off`, ...start.args]
      this.proc = spawnQemu(setpriv, spec.qemu, args, sinks, start.fd3)
    }
    this.exited = this.proc.exited.then((code) => {
      this.exitCode = code
      this.gone = true
      this.qmpClient?.close()
      this.agentSocket?.destroy()
      hooks.signal?.removeEventListener('abort', this.onAbort)
    })
    hooks.signal?.addEventListener('abort', this.onAbort)
    live.add(this)
    installVmTeardown()
  }

  /** For a signal or exit, when nothing can be awaited: QEMU killed, the temp folder removed. */
  teardownSync(): void {
    this.proc.kill()
    // A guest restored ahead has its folder removed by its holder, once QEMU is gone.
    if (!this.heldElsewhere) rmSync(this.work.path, { recursive: true, force: true })
  }

  private get agentPath() {
    return join(this.work.path, 'agent.sock')
  }

  private get qmpPath() {
    return join(this.work.path, 'qmp.sock')
  }

  /** The temp folder holding the sockets (tests check it is gone after dispose). */
  get workDir(): string {
    return this.work.path
  }

  get pid(): number | undefined {
    return this.proc.pid
  }

  /** QEMU's exit code or signal; undefined while it runs. */
  get exitStatus(): number | string | undefined {
    return this.gone ? (this.exitCode ?? 'exited') : undefined
  }

  /** Connected to the agent's channel in the guest. */
  get agent(): Socket {
    if (!this.agentSocket) throw new Error('the agent socket is not connected yet')
    return this.agentSocket
  }

  get qmp(): QmpClient {
    if (!this.qmpClient) throw new Error('QMP is not connected yet')
    return this.qmpClient
  }

  /** Boots the machine; resolves once QMP and the agent socket are connected (the guest is still booting). */
  static async boot(spec: MachineSpec, o: VmHooks & { connectTimeoutMs: number }): Promise<GuestVm> {
    o.signal?.throwIfAborted()
    const setpriv = setprivPath() // before the temp dir: if it is missing, nothing is left behind
    setsidPath()
    const vm = new GuestVm(spec, await ownedTempDir(), setpriv, { args: [] }, o)
    return vm.starting('booting', Date.now() + o.connectTimeoutMs, async (deadline) => {
      await vm.connectSockets(deadline)
    })
  }

  /**
   * Starts QEMU on a saved state, waits for the state to be loaded, connects the agent and only then
   * lets the guest run (`cont`): the guest was stopped when saved and stays paused until told, so
   * nothing it writes after the restore can reach a socket nobody holds yet.
   */
  static async restore(spec: MachineSpec, stateFile: string, o: VmHooks & { timeoutMs: number }): Promise<GuestVm> {
    const deadline = Date.now() + o.timeoutMs
    const vm = await GuestVm.restorePaused(spec, stateFile, o)
    return vm.starting('restoring', deadline, (deadline) => vm.resume(deadline))
  }

  /**
   * The first half of a restore: QEMU started on the state and the state loaded, the guest still paused
   * and its agent not connected. `handOff` then leaves QMP to whoever resumes it (src/vm/ahead.ts).
   */
  static async restorePaused(spec: MachineSpec, stateFile: string, o: VmHooks & { timeoutMs: number }): Promise<GuestVm> {
    o.signal?.throwIfAborted()
    const setpriv = setprivPath()
    setsidPath()
    // QEMU reads the state from the file itself (no `cat`, no pipe): the file is open only until QEMU has it.
    // Said here: a file QEMU cannot read would look like a damaged state.
    const state = await open(stateFile, 'r').catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cannot restore the guest from ${stateFile}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
    })
    let vm: GuestVm
    try {
      vm = new GuestVm(spec, await ownedTempDir(), setpriv, { args: ['-incoming', 'fd:3'], fd3: state.fd }, o)
    } finally {
      await state.close()
    }
    return vm.starting('restoring', Date.now() + o.timeoutMs, async (deadline) => {
      await vm.connectQmp(deadline)
      await vm.waitMigration(deadline, `the restore did not complete within ${o.timeoutMs / 1000} s`)
    })
  }

  /** Closes this process's QMP connection (QEMU's QMP socket takes one client at a time). */
  async handOff(): Promise<void> {
    const s = this.qmpClient
    this.qmpClient = undefined
    await s?.closed()
  }

  /**
   * A guest restored ahead and paused by another process, resumed here: its folder (sockets) is that
   * process's, and so are QEMU's life and death (`process`: its output, exit and kill, over the claim's socket).
   */
  static async resumeAhead(spec: MachineSpec, dir: string, process: (sinks: QemuSinks) => QemuProcess, o: VmHooks & { timeoutMs: number }): Promise<GuestVm> {
    const vm = new GuestVm(spec, { path: dir, cleanup: async () => undefined }, '', { process }, o)
    return vm.starting('resuming', Date.now() + o.timeoutMs, async (deadline) => {
      await vm.connectQmp(deadline)
      await vm.waitMigration(deadline, `the restored state was not loaded within ${o.timeoutMs / 1000} s`)
      await vm.resume(deadline)
    })
  }

  /** The second half of a restore: the agent connected, then the guest let run. */
  private async resume(deadline: number): Promise<void> {
    await this.connectAgent(deadline)
    await this.waitAgentAccepted(deadline)
    await this.qmp.execute('cont')
  }

  /** Runs a start-up phase; on any failure QEMU is stopped, the temp dir removed, and one line says why. */
  private async starting(phase: string, deadline: number, run: (deadline: number) => Promise<void>): Promise<GuestVm> {
    try {
      // Whichever comes first: the phase done, or QEMU gone (a bad command line, a state QEMU rejects).
      await Promise.race([
        run(deadline),
        this.exited.then(() => {
          throw new Error(`QEMU exited while ${phase} the guest (${this.exitCode})`)
        }),
      ])
      return this
    } catch (err) {
      const aborted = this.hooks.signal?.aborted
      // A QMP error is often QEMU dying (a state it rejects): then its exit says more.
      const msg = (await this.exitedWithin(EXIT_GRACE_MS)) && !aborted ? `QEMU exited while ${phase} the guest (${this.exitCode})` : (err as Error).message
      const why = this.explanation()
      await this.dispose()
      if (aborted) throw abortError(`interrupted while ${phase} the guest: QEMU was stopped`)
      throw new Error(why ? `${msg}: ${why}` : msg)
    }
  }

  private async connectSockets(deadline: number): Promise<void> {
    await this.connectQmp(deadline)
    await this.connectAgent(deadline)
  }

  private async connectQmp(deadline: number): Promise<void> {
    const timeoutMs = Math.max(0, deadline - Date.now())
    this.qmpClient = await QmpClient.connect(this.qmpPath, { timeoutMs, ...(this.hooks.signal && { signal: this.hooks.signal }) }).catch((err: Error) => {
      throw new Error(`could not connect to QEMU's QMP socket: ${err.message}`)
    })
  }

  private async connectAgent(deadline: number): Promise<void> {
    this.agentSocket = await connectUnix(this.agentPath, deadline, this.hooks.signal).catch((err: Error) => {
      throw new Error(`the guest's agent socket could not be connected: ${err.message}`)
    })
    this.agentSocket.on('error', () => undefined) // a reset when QEMU dies: seen as 'close' by the caller
  }

  /** QEMU accepts the agent connection from its main loop: confirm it did before the guest runs. */
  private async waitAgentAccepted(deadline: number): Promise<void> {
    for (;;) {
      const chardevs = await this.qmp.execute<{ label: string; filename: string }[]>('query-chardev')
      const agent = chardevs.find((c) => c.label === 'agent')
      if (agent && !agent.filename.startsWith('disconnected')) return
      if (Date.now() >= deadline) throw new Error(`QEMU did not accept the agent connection (${agent?.filename})`)
      await sleep(POLL_MS)
    }
  }

  /** Polls query-migrate until it completes; fails with QEMU's reason (or its helper's), or `late` at the deadline. */
  private waitMigration(deadline: number, late: string): Promise<void> {
    return waitMigration(this.qmp, deadline, late, this.stderrLines)
  }

  /**
   * Saves the running guest into `stateFile` (stopped first, so it resumes paused) and quits QEMU.
   * Fails with QEMU's reason or what its `cat` said (a full disk); the caller removes a partial file.
   */
  async save(stateFile: string, o: { timeoutMs?: number } = {}): Promise<{ bytes: number; ms: number }> {
    const timeoutMs = o.timeoutMs ?? SAVE_TIMEOUT_MS
    const t0 = performance.now()
    const deadline = Date.now() + timeoutMs
    try {
      await Promise.race([
        (async () => {
          await this.qmp.execute('stop')
          // QEMU caps a migration at 128 MiB/s by default (3 s for a 376 MB state): a file can take it at once.
          await this.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 ** 3 })
          this.stderrLines.length = 0
          // QEMU closes the pipe on completion and SIGTERMs its helper at once (SIGKILL 10 ms later):
          // cat ignores TERM so that it can write what is still in the pipe.
          await this.qmp.execute('migrate', { uri: `exec:trap '' TERM; exec cat > ${shellQuote(stateFile)}` })
          await this.waitMigration(deadline, `the save did not complete within ${timeoutMs / 1000} s`)
          await waitStreamEnd(stateFile, Math.min(deadline, Date.now() + STREAM_END_MS))
        })(),
        this.exited.then(() => {
          throw new Error(`QEMU exited (${this.exitCode})`)
        }),
      ])
    } catch (err) {
      const aborted = this.hooks.signal?.aborted
      const why = (await this.exitedWithin(EXIT_GRACE_MS)) ? this.failure() : undefined
      await this.dispose()
      if (aborted) throw abortError('interrupted while saving the guest: QEMU was stopped')
      throw new Error(`saving the guest failed: ${(err as Error).message}${why ? `; ${why}` : ''}`)
    }
    const ms = performance.now() - t0
    this.stopping = true
    await this.qmp.execute('quit').catch(() => undefined) // QEMU may close the socket before answering
    await this.dispose()
    return { bytes: (await stat(stateFile)).size, ms }
  }

  /** True once QEMU is gone, waiting up to `ms` for it. */
  private async exitedWithin(ms: number): Promise<boolean> {
    const timer = sleep(ms).then(() => false)
    return Promise.race([this.exited.then(() => true), timer])
  }

  private onLine(line: string): void {
    this.console.push(line)
    this.hooks.onConsole?.(line)
  }

  /**
   * Why the guest stopped, from its console: a panic, a soft lockup, the guest's own OOM, QEMU's
   * error. Undefined while it runs normally or after the harness stopped it.
   */
  failure(): string | undefined {
    if (this.explanation()) return this.explanation()
    if (!this.gone || this.stopping) return undefined
    // The agent says why it stopped on the console (its error, then /init's "exited with status").
    const agent = this.console.tail.map((l) => l.replace(/\x1b\[[0-9;]*m/g, '').trim()).filter((l) => /^(oomlab|[A-Z]\w*Error\b)/.test(l))
    return agent.length ? `QEMU exited (${this.exitCode}); the guest's console: ${agent.slice(-3).join(' | ')}` : `QEMU exited (${this.exitCode}) and its console does not say why`
  }

  /** What the console says went wrong, if it says anything. */
  private explanation(): string | undefined {
    // While QEMU runs, only a kernel incident counts: QEMU may print harmless warnings.
    const lines = this.console.incident ?? (this.gone ? this.console.tail : undefined)
    if (!lines) return undefined
    const why = explainSilence(lines, this.exitCode)
    // explainSilence's fallback speaks of a missing result: it says nothing here.
    if (!why.startsWith('the guest stopped without reporting a result')) return why
    return this.console.incident && `the guest kernel reported: ${this.console.incident[0]!.replace(/^\[[\s\d.]+\]\s*/, '')}`
  }

  consoleTail(): string[] {
    return [...this.console.tail]
  }

  /** The console from the guest kernel's first "BUG:" or panic line on, if any. */
  incident(): string[] | undefined {
    return this.console.incident && [...this.console.incident]
  }

  private kill(): void {
    if (!this.gone) this.proc.kill()
  }

  /** Idempotent: QEMU killed and awaited, sockets closed, the temp dir removed. */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.stopping ||= !this.gone
      this.kill()
      await this.exited
      this.qmpClient?.close()
      this.agentSocket?.destroy()
      await this.work.cleanup().catch(() => undefined)
      live.delete(this)
    })()
    return this.disposing
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose()
  }
}

function abortError(message: string): Error {
  const err = new Error(message)
  err.name = 'AbortError'
  return err
}
