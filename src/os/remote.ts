/**
 * The Os of a guest, reached through its agent (src/vm/in-guest/agent.ts): each call is one request and
 * one answer on the channel; the kernel log's records are pushed by the agent as they come. A call
 * that gets no answer in time, or a channel that breaks, fails with what the guest's console says.
 */
import type { BirpcReturn } from 'birpc'
import { connect, type AgentFunctions, type Duplex, type HostFunctions } from './wire.js'
import type { KmsgRecord } from '../kmsg/record.js'
import type { MachineStats, Os, OsFacts, Op, OpResult, SpawnSpec, Spawned, Tree, TreeOptions, KeyedCondition, TextCondition, ProcIdentity, Marker, AllocationWatch, AllocationEnd, ExecSpec, ExecResult } from './os.js'

/** A call without a deadline of its own must be answered within this; a wait gets its own timeout on top. */
const ANSWER_MS = 30_000

/**
 * While calls wait (a wait may rightly take minutes), the agent is pinged this often, and one that leaves
 * a ping unanswered this long is stuck, or its guest hangs: every waiting call fails then, not at its end.
 */
const HEARTBEAT_MS = 5_000
const HEARTBEAT_ANSWER_MS = 15_000

export interface RemoteOptions {
  /** "guest 6.1.0-50-cloud-amd64": for messages. */
  name: string
  /** Why the guest stopped answering, if its console says (panic, lockup, out of memory). */
  explain?: () => string | undefined
  /** Called once when the channel breaks (a bad frame, the connection closed). */
  onBroken?: (why: Error) => void
  /** The guest is thrown away after its experiment. */
  disposable?: boolean
  /** The agent said it is up (at boot only). */
  onReady?: (info: { release: string; uptimeMs: number }) => void
  /** Scales ANSWER_MS (OOMLAB_TIMEOUT_SCALE). */
  scale?: number
}

export class RemoteOs implements Os {
  readonly name: string
  readonly disposable: boolean
  private readonly rpc: BirpcReturn<AgentFunctions, HostFunctions>
  private onRecords: ((records: KmsgRecord[]) => void) | undefined
  private onKmsgBroken: ((why: string) => void) | undefined
  private broken: Error | undefined
  private readonly pending = new Set<(err: Error) => void>()
  private heartbeat: NodeJS.Timeout | undefined
  /** When the ping in flight was sent (performance.now()), if one is. */
  private pingSentAt: number | undefined
  private unfinished: () => string = () => ''
  /** Round trips made, for the bench. */
  calls = 0
  /** Host ms spent in each kind of call (answer included), for the bench: where a spec's time goes. */
  readonly timeByCall: Record<string, number> = {}

  constructor(
    stream: Duplex,
    private readonly o: RemoteOptions,
  ) {
    this.name = o.name
    this.disposable = o.disposable ?? false
    this.rpc = connect<AgentFunctions, HostFunctions>(
      stream,
      {
        kmsg: (records) => this.onRecords?.(records),
        kmsgBroken: (why) => this.onKmsgBroken?.(why),
        ready: (info) => o.onReady?.(info),
      },
      { onBroken: (why) => this.break(why), unfinished: (peek) => (this.unfinished = peek) },
    )
  }

  /** What the guest says of itself, or what the channel shows: a frame cut off mid-answer. */
  private explain(): string | undefined {
    const cut = this.unfinished()
    const channel = cut ? `the channel holds ${cut.length} bytes of a frame that never ended (${JSON.stringify(cut.slice(0, 40))})` : undefined
    return [this.o.explain?.(), channel].filter(Boolean).join('; ') || undefined
  }

  private beat(): void {
    if (this.pingSentAt !== undefined) {
      const waited = performance.now() - this.pingSentAt
      if (waited > HEARTBEAT_ANSWER_MS * (this.o.scale ?? 1)) this.break(new Error(`the agent left a ping unanswered for ${Math.round(waited / 1000)} s: it is stuck, or the guest hangs`))
      return
    }
    this.pingSentAt = performance.now()
    this.rpc.ping().then(
      () => (this.pingSentAt = undefined),
      () => undefined,
    )
  }

  /** The channel is gone: every call waiting fails now, with the guest's own explanation if it has one. */
  break(why: Error): void {
    if (this.broken) return
    const explained = this.explain()
    this.broken = new Error(`${this.name}: the channel to the guest agent broke (${why.message})${explained ? `: ${explained}` : ''}`, { cause: why })
    clearInterval(this.heartbeat)
    for (const reject of this.pending) reject(this.broken)
    this.pending.clear()
    this.onKmsgBroken?.(this.broken.message)
    this.rpc.$close(this.broken)
    this.o.onBroken?.(this.broken)
  }

  private async call<T>(what: string, ms: number, f: () => Promise<T>): Promise<T> {
    if (this.broken) throw this.broken
    this.calls++
    let reject!: (err: Error) => void
    let timer: NodeJS.Timeout | undefined
    const stop = new Promise<never>((_, rej) => {
      reject = rej
      const limit = ms + ANSWER_MS * (this.o.scale ?? 1)
      timer = setTimeout(() => {
        const explained = this.explain()
        rej(new Error(`${this.name}: the guest agent did not answer ${what} within ${Math.round(limit / 1000)} s${explained ? `: ${explained}` : ': hung?'}`))
      }, limit)
    })
    this.pending.add(reject)
    this.heartbeat ??= setInterval(() => this.beat(), HEARTBEAT_MS).unref()
    const t0 = performance.now()
    try {
      return await Promise.race([f(), stop])
    } finally {
      clearTimeout(timer)
      this.pending.delete(reject)
      if (this.pending.size === 0) {
        clearInterval(this.heartbeat)
        this.heartbeat = undefined
        this.pingSentAt = undefined
      }
      const kind = what.split(' ')[0]!
      this.timeByCall[kind] = Math.round((this.timeByCall[kind] ?? 0) + performance.now() - t0)
    }
  }

  stats(): MachineStats {
    return { kind: 'guest', roundTrips: this.calls, callMs: { ...this.timeByCall } }
  }

  ping(): Promise<number> {
    return this.call('ping', 0, () => this.rpc.ping())
  }

  clock(): Promise<number> {
    return this.call('clock', 0, () => this.rpc.clock())
  }

  facts(): Promise<OsFacts> {
    return this.call('facts', 0, () => this.rpc.facts())
  }

  run(ops: readonly Op[]): Promise<OpResult[]> {
    return this.call(`run (${ops.length} operations)`, 0, () => this.rpc.run(ops))
  }

  openTree(o: TreeOptions): Promise<Tree> {
    return this.call('openTree', 0, () => this.rpc.openTree(o))
  }

  closeTree(tree: Tree): Promise<void> {
    return this.call('closeTree', 20_000, () => this.rpc.closeTree(tree))
  }

  spawn(spec: SpawnSpec): Promise<Spawned> {
    return this.call(`spawn ${spec.argv.join(' ')}`, spec.timeoutMs, () => this.rpc.spawn(spec))
  }

  type(id: string, line: string): Promise<void> {
    return this.call('type', 0, () => this.rpc.type(id, line))
  }

  outputMark(id: string): Promise<number> {
    return this.call('outputMark', 0, () => this.rpc.outputMark(id))
  }

  waitOutput(id: string, pattern: string, since: number, expected: string, timeoutMs: number): Promise<string[]> {
    return this.call(`waitOutput (${expected})`, timeoutMs, () => this.rpc.waitOutput(id, pattern, since, expected, timeoutMs))
  }

  output(id: string): Promise<string> {
    return this.call('output', 0, () => this.rpc.output(id))
  }

  waitExit(procs: readonly (ProcIdentity & { label: string })[], timeoutMs: number): Promise<void> {
    return this.call('waitExit', timeoutMs, () => this.rpc.waitExit(procs, timeoutMs))
  }

  exec(spec: ExecSpec): Promise<ExecResult> {
    return this.call(`exec ${spec.argv.join(' ')}`, spec.timeoutMs, () => this.rpc.exec(spec))
  }

  setOomScoreAdj(pid: number, adj: number): Promise<void> {
    return this.call('setOomScoreAdj', 0, () => this.rpc.setOomScoreAdj(pid, adj))
  }

  waitAllocationEnd(w: AllocationWatch, timeoutMs: number): Promise<AllocationEnd> {
    return this.call('waitAllocationEnd', timeoutMs, () => this.rpc.waitAllocationEnd(w, timeoutMs))
  }

  waitText(c: TextCondition, timeoutMs: number): Promise<{ groups: string[]; length: number }> {
    return this.call(`waitText (${c.expected})`, timeoutMs, () => this.rpc.waitText(c, timeoutMs))
  }

  waitKeyed(c: KeyedCondition, timeoutMs: number): Promise<{ values: Record<string, number>; atUs: number }> {
    return this.call(`waitKeyed (${c.expected})`, timeoutMs, () => this.rpc.waitKeyed(c, timeoutMs))
  }

  async followKernelLog(onRecords: (records: KmsgRecord[]) => void, onBroken?: (why: string) => void): Promise<number> {
    this.onRecords = onRecords
    this.onKmsgBroken = onBroken
    return this.call('followKernelLog', 0, () => this.rpc.followKernelLog())
  }

  kernelLogBarrier(): Promise<number> {
    return this.call('kernelLogBarrier', 20_000, () => this.rpc.kernelLogBarrier())
  }

  kernelLogMark(text: string): Promise<Marker> {
    return this.call('kernelLogMark', 0, () => this.rpc.kernelLogMark(text))
  }

  tracePopulated(on: boolean): Promise<boolean> {
    return this.call('tracePopulated', 0, () => this.rpc.tracePopulated(on))
  }

  readTrace(): Promise<string> {
    return this.call('readTrace', 0, () => this.rpc.readTrace())
  }

  /** Closes the channel; the guest itself is its owner's to stop. */
  async dispose(): Promise<void> {
    clearInterval(this.heartbeat)
    if (!this.rpc.$closed) this.rpc.$close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose()
  }
}
