/**
 * The wire between RemoteOs and the agent: birpc's request/answer messages, one JSON object per line
 * on a byte stream (a unix socket on the host, a virtio-serial port or the second UART inside). Every
 * frame is validated before birpc sees it; errors cross the wire with their class and fields.
 */
import { createBirpc, type BirpcReturn } from 'birpc'
import { KernelTimeoutError, UserError, Unsupported } from '../util/errors.js'
import { OsError, type Op, type Os } from './os.js'
import type { KmsgRecord } from '../kmsg/record.js'

/** What the host offers the agent: the kernel log's records, pushed as they come. */
export interface HostFunctions {
  kmsg(records: KmsgRecord[]): void
  kmsgBroken(why: string): void
  /** The agent is up and listening (said once, at boot: a restored guest is past it). */
  ready(info: { release: string; uptimeMs: number }): void
}

/** What the agent offers: the Os, less what cannot cross (callbacks, disposal). */
export type AgentFunctions = Omit<Os, 'name' | 'stats' | 'disposable' | 'followKernelLog' | typeof Symbol.asyncDispose> & {
  followKernelLog(): Promise<number>
  /** The agent's own answer to "are you there": its uptime (ms). */
  ping(): Promise<number>
}

/** A byte stream with lines: both sides' transport. */
export interface Duplex {
  write(text: string): void
  onData(fn: (chunk: string) => void): void
  offData(fn: (chunk: string) => void): void
}

const ERRORS: Record<string, (e: WireError) => Error | undefined> = {
  KernelTimeoutError: (e) => new KernelTimeoutError(e.expected ?? '?', e.lastSeen ?? '?', e.timeoutMs ?? 0),
  UserError: (e) => new UserError(e.message, e.exitCode),
  Unsupported: (e) => new Unsupported(e.message),
  OsError: (e) => (e.op && e.reason !== undefined ? new OsError(e.op, e.reason, e.code) : undefined),
}

interface WireError {
  name: string
  message: string
  expected?: string
  lastSeen?: string
  timeoutMs?: number
  exitCode?: number
  op?: Op
  reason?: string
  /** An errno code (ENOENT, EBUSY...): what the caller may branch on. */
  code?: string
}

function replacer(_key: string, value: unknown): unknown {
  if (!(value instanceof Error)) return value
  const e = value as Error & Partial<WireError>
  return {
    $error: {
      name: e.name,
      message: e.message,
      ...(e.expected !== undefined && { expected: e.expected, lastSeen: e.lastSeen, timeoutMs: e.timeoutMs }),
      ...(e.exitCode !== undefined && { exitCode: e.exitCode }),
      ...(e instanceof OsError && { op: e.op, reason: e.reason }),
      ...(typeof e.code === 'string' && { code: e.code }),
    },
  }
}

function reviver(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || !('$error' in value)) return value
  const e = (value as { $error: WireError }).$error
  const made = ERRORS[e.name]?.(e)
  if (made) return made
  const err = new Error(e.message) as Error & { code?: string }
  err.name = e.name
  if (e.code !== undefined) err.code = e.code
  return err
}

/** A frame is a birpc request ({t:"q", m, a}) or answer ({t:"s", i}); anything else is refused by name. */
export function parseFrame(line: string): object {
  let msg: unknown
  try {
    msg = JSON.parse(line, reviver)
  } catch {
    throw new Error(`not a frame (not JSON): ${JSON.stringify(line.slice(0, 80))}`)
  }
  const m = msg as { t?: unknown; m?: unknown; a?: unknown; i?: unknown }
  const ok = m !== null && typeof m === 'object' && ((m.t === 'q' && typeof m.m === 'string' && Array.isArray(m.a)) || (m.t === 's' && typeof m.i === 'string'))
  if (!ok) throw new Error(`not a frame (not a birpc request or answer): ${JSON.stringify(line.slice(0, 80))}`)
  return msg as object
}

/**
 * Connects `local` functions to the other side's over a line stream. A bad frame closes the channel
 * with the reason (`onBroken`): after it nothing that side says can be trusted.
 */
export function connect<Remote extends object, Local extends object>(
  stream: Duplex,
  local: Local,
  o: { eventNames?: (keyof Remote)[]; onBroken: (why: Error) => void; unfinished?: (peek: () => string) => void },
): BirpcReturn<Remote, Local> {
  let partial = ''
  // What arrived after the last newline: a frame cut off, when the other side stops mid-answer.
  o.unfinished?.(() => partial)
  let listener: ((frame: object) => void) | undefined
  const onData = (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      const text = line.replace(/\r$/, '')
      if (!text) continue
      let frame: object
      try {
        frame = parseFrame(text)
      } catch (err) {
        stream.offData(onData)
        o.onBroken(err as Error)
        return
      }
      listener?.(frame)
    }
  }
  stream.onData(onData)
  return createBirpc<Remote, Local>(local, {
    post: (frame: string) => stream.write(`${frame}\n`),
    on: (fn) => {
      listener = fn
    },
    off: () => {
      listener = undefined
      stream.offData(onData)
    },
    serialize: (v: unknown) => JSON.stringify(v, replacer),
    // Frames arrive parsed and checked (onData above).
    deserialize: (v: unknown) => v,
    eventNames: o.eventNames ?? [],
    // Each call's deadline is the caller's (RemoteOs): a wait may rightly take minutes.
    timeout: -1,
  })
}

/** Two ends of a line stream in memory: the agent's rehearsal, and tests. `inject` feeds the first end. */
export function memoryPipe(): { host: Duplex; agent: Duplex; inject: (text: string) => void } {
  const listeners = { host: new Set<(s: string) => void>(), agent: new Set<(s: string) => void>() }
  const end = (me: 'host' | 'agent', other: 'host' | 'agent'): Duplex => ({
    write: (text) => queueMicrotask(() => listeners[other].forEach((l) => l(text))),
    onData: (fn) => listeners[me].add(fn),
    offData: (fn) => listeners[me].delete(fn),
  })
  return { host: end('host', 'agent'), agent: end('agent', 'host'), inject: (text) => listeners.host.forEach((l) => l(text)) }
}
