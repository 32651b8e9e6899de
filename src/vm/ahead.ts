/**
 * Guests restored ahead: restored before an experiment asks for one, and handed to it. Loading a
 * snapshot's state is most of a restore, and a run's first guests are all wanted at once, just after
 * vitest has started its workers, ~1.2 s after the CLI has prepared the snapshot. So the CLI (the
 * holder) restores them, paused, while vitest starts, and each worker claims one over a unix socket
 * instead of restoring its own; when none is left, a worker restores its own.
 *
 * A claimed guest's QEMU stays a child of the holder, so it dies with the holder however the holder
 * dies; its console and its exit come to the worker over the claim's socket; and when that socket
 * closes (the worker disposed of its guest, or died) the holder kills it and removes its folder.
 *
 * The claim's socket, one JSON object per line:
 *   worker -> holder   {"claim": snapshot key}   {"kill": true}
 *   holder -> worker   {"guest": {"pid", "dir", "loadMs"}} or {"none": why}, then {"line": text}... {"exit": code}
 */
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import type { DirectoryResult } from 'tmp-promise'
import { GuestVm, type MachineSpec, type QemuProcess, type QemuSinks, type VmHooks } from './vm.js'
import { ownedTempDir } from './owned-dirs.js'
import { connectUnix } from './qemu/qmp.js'
import { lineSplitter } from './qemu/console.js'
import { errorMessage } from '../util/errors.js'

/** Console lines kept for a guest nobody has claimed yet (it is paused: QEMU's own warnings). */
const UNCLAIMED_LINES = 200
/** A frame longer than this is not the claim socket's. */
const MAX_FRAME = 64 * 1024

export interface ClaimedAhead {
  vm: GuestVm
  /** Host ms the holder spent loading its state (QEMU start to the load complete). */
  loadMs: number
}

type Holder = { guest: { pid: number; dir: string; loadMs: number } } | { none: string } | { line: string } | { exit: number | string | null }
type Claimer = { claim: string } | { kill: true }

interface Held {
  loading: Promise<GuestVm | undefined>
  vm?: GuestVm
  loadMs?: number
  claimed: boolean
  lines: string[]
  claimer?: Socket
}

function send(s: Socket, msg: Holder | Claimer): void {
  if (!s.destroyed && s.writable) s.write(`${JSON.stringify(msg)}\n`)
}

/** Reads a claim socket's frames; anything that is not one of `parse`'s closes it. */
function frames<T>(s: Socket, parse: (v: unknown) => T | undefined, on: (msg: T) => void): void {
  const split = lineSplitter((line) => {
    if (line.length > MAX_FRAME) return void s.destroy()
    let v: unknown
    try {
      v = JSON.parse(line)
    } catch {
      return void s.destroy()
    }
    const msg = parse(v)
    if (msg === undefined) return void s.destroy()
    on(msg)
  })
  s.on('data', (chunk: Buffer) => split.push(chunk))
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const oneKey = (v: Record<string, unknown>, k: string) => Object.keys(v).length === 1 && k in v

function parseClaimer(v: unknown): Claimer | undefined {
  if (!isObject(v)) return undefined
  if (oneKey(v, 'claim') && typeof v.claim === 'string') return { claim: v.claim }
  if (oneKey(v, 'kill') && v.kill === true) return { kill: true }
  return undefined
}

function parseHolder(v: unknown): Holder | undefined {
  if (!isObject(v)) return undefined
  if (oneKey(v, 'line') && typeof v.line === 'string') return { line: v.line }
  if (oneKey(v, 'exit') && (typeof v.exit === 'number' || typeof v.exit === 'string' || v.exit === null)) return { exit: v.exit }
  if (oneKey(v, 'none') && typeof v.none === 'string') return { none: v.none }
  if (oneKey(v, 'guest') && isObject(v.guest)) {
    const { pid, dir, loadMs } = v.guest
    if (Number.isInteger(pid) && (pid as number) > 0 && typeof dir === 'string' && typeof loadMs === 'number') return { guest: { pid: pid as number, dir, loadMs } }
  }
  return undefined
}

/** The guests one process restores ahead for one snapshot, and the socket the workers claim them on. */
export class GuestsAhead implements AsyncDisposable {
  private disposing: Promise<void> | undefined

  private constructor(
    private readonly key: string,
    private readonly dir: DirectoryResult,
    private readonly server: Server,
    private readonly guests: Held[],
  ) {}

  get socketPath(): string {
    return join(this.dir.path, 'ahead.sock')
  }

  /** Starts restoring `count` guests of `snapshot` at once, paused; returns before they are restored. */
  static async start(
    spec: MachineSpec,
    snapshot: { path: string; key: string },
    count: number,
    o: { timeoutMs: number; log?: (line: string) => void; signal?: AbortSignal },
  ): Promise<GuestsAhead> {
    const dir = await ownedTempDir()
    const guests: Held[] = []
    const server = createServer((s) => ahead.serve(s))
    const ahead = new GuestsAhead(snapshot.key, dir, server, guests)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(ahead.socketPath, () => resolve())
    })
    let said = false
    for (let i = 0; i < count; i++) {
      const a: Held = { claimed: false, lines: [], loading: Promise.resolve(undefined) }
      const t0 = performance.now()
      a.loading = GuestVm.restorePaused(spec, snapshot.path, {
        timeoutMs: o.timeoutMs,
        onConsole: (line) => (a.claimer ? send(a.claimer, { line }) : a.lines.length < UNCLAIMED_LINES && a.lines.push(line)),
        ...(o.signal && { signal: o.signal }),
      }).then(
        async (vm) => {
          a.loadMs = performance.now() - t0
          a.vm = vm
          void vm.exited.then(() => ahead.ended(a))
          await vm.handOff()
          return vm
        },
        (err: unknown) => {
          // The worker that finds none restores its own, and says what goes wrong with it.
          if (!said && !o.signal?.aborted) o.log?.(`a guest restored ahead failed (${errorMessage(err)}); the experiments restore their own`)
          said = true
          return undefined
        },
      )
      guests.push(a)
    }
    return ahead
  }

  private serve(s: Socket): void {
    let held: Held | undefined
    s.on('error', () => undefined)
    // The claim ends: the worker is done with its guest, or gone.
    s.on('close', () => void held?.vm?.dispose())
    frames(s, parseClaimer, (msg) => {
      if ('kill' in msg) return void held?.vm?.dispose()
      if (held || this.disposing) return void s.destroy()
      if (msg.claim !== this.key) return send(s, { none: `the guests restored ahead are of snapshot ${this.key}` })
      void this.claim().then((a) => {
        if (!a) return send(s, { none: 'none is left' })
        held = a
        if (s.destroyed) return void a.vm!.dispose()
        a.claimer = s
        send(s, { guest: { pid: a.vm!.pid!, dir: a.vm!.workDir, loadMs: Math.round(a.loadMs!) } })
        for (const line of a.lines.splice(0)) send(s, { line })
      })
    })
  }

  /** The next guest in the order they were started, once restored; undefined when none is left. */
  private async claim(): Promise<Held | undefined> {
    for (const a of this.guests) {
      if (a.claimed) continue
      a.claimed = true
      const vm = await a.loading
      if (vm && vm.exitStatus === undefined) return a
    }
    return undefined
  }

  /** Its QEMU is gone: the folder removed, then the claimer told. */
  private async ended(a: Held): Promise<void> {
    await a.vm!.dispose()
    if (a.claimer) {
      send(a.claimer, { exit: a.vm!.exitStatus ?? null })
      a.claimer.end()
    }
  }

  /** Every guest killed, claimed or not, its folder removed; the socket closed. Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.server.close()
      await Promise.all(this.guests.map(async (a) => (await a.loading)?.dispose()))
      for (const a of this.guests) a.claimer?.destroy()
      await this.dir.cleanup().catch(() => undefined)
    })()
    return this.disposing
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose()
  }
}

/**
 * Claims a guest restored ahead and resumes it here. `{ none: why }` when the holder has none for this
 * snapshot, or is gone; a guest that fails to resume is disposed of and the failure thrown.
 */
export async function claimAhead(socketPath: string, key: string, spec: MachineSpec, o: VmHooks & { timeoutMs: number }): Promise<ClaimedAhead | { none: string }> {
  const deadline = Date.now() + o.timeoutMs
  let s: Socket
  try {
    s = await connectUnix(socketPath, Date.now(), o.signal)
  } catch (err) {
    return { none: `the process holding them is gone (${errorMessage(err)})` }
  }
  s.on('error', () => undefined)
  const queued: Holder[] = []
  let deliver: ((msg: Holder) => void) | undefined
  let answered!: (msg: Holder | { none: string }) => void
  const answer = new Promise<Holder | { none: string }>((resolve) => (answered = resolve))
  let replied = false
  frames(s, parseHolder, (msg) => {
    if (!replied) {
      replied = true
      return answered(msg)
    }
    if (deliver) deliver(msg)
    else queued.push(msg)
  })
  s.once('close', () => answered({ none: 'the process holding them closed the claim' }))
  const timer = setTimeout(() => answered({ none: `no answer within ${o.timeoutMs / 1000} s` }), o.timeoutMs)
  send(s, { claim: key })
  const reply = await answer
  clearTimeout(timer)
  if (!('guest' in reply)) {
    s.destroy()
    return 'none' in reply ? reply : { none: 'the holder answered out of turn' }
  }
  const { pid, dir, loadMs } = reply.guest
  const held = (sinks: QemuSinks): QemuProcess => {
    let ended!: (code: number | string | undefined) => void
    const exited = new Promise<number | string | undefined>((resolve) => (ended = resolve))
    const on = (msg: Holder) => {
      if ('line' in msg) sinks.out(msg.line)
      else if ('exit' in msg) ended(msg.exit ?? undefined)
      else s.destroy()
    }
    s.once('close', () => ended('its holder closed the claim'))
    for (const msg of queued.splice(0)) on(msg)
    deliver = on
    return { pid, exited, kill: () => send(s, { kill: true }) }
  }
  const vm = await GuestVm.resumeAhead(spec, dir, held, { ...o, timeoutMs: Math.max(0, deadline - Date.now()) })
  return { vm, loadMs }
}
