/**
 * A minimal QMP client (QEMU's JSON control protocol) over a unix socket: enough to stop a guest,
 * migrate it to a file, wait for the migration and quit. One JSON object per line each way.
 */
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export interface QmpEvent {
  event: string
  data?: unknown
  timestamp?: { seconds: number; microseconds: number }
}

/**
 * Connects to a unix socket that QEMU creates a little after it starts: ENOENT and ECONNREFUSED
 * are retried until `deadline` (a Date.now() value); anything else fails at once.
 */
export async function connectUnix(path: string, deadline: number, signal?: AbortSignal): Promise<Socket> {
  for (;;) {
    signal?.throwIfAborted()
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(path)
        s.once('connect', () => {
          s.off('error', reject)
          resolve(s)
        })
        s.once('error', reject)
      })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() >= deadline) throw err
      await sleep(20, undefined, signal ? { signal } : {})
    }
  }
}

interface Pending {
  command: string
  resolve: (value: unknown) => void
  reject: (err: Error) => void
}

export class QmpClient {
  /** Asynchronous events QEMU sent (STOP, RESUME, MIGRATION, SHUTDOWN...), oldest first. */
  readonly events: QmpEvent[] = []
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private greeting: ((line: unknown) => void) | undefined
  /** Why the connection is unusable: later commands fail with this. */
  private broken: string | undefined

  private constructor(private readonly socket: Socket) {
    let partial = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) if (line.trim()) this.onLine(line)
    })
    socket.on('error', (err) => this.fail(`QMP connection error: ${err.message}`))
    socket.on('close', () => this.fail('QMP connection closed (QEMU gone?)'))
  }

  /** Connects (retrying until `timeoutMs` while QEMU creates the socket), reads the greeting, negotiates. */
  static async connect(path: string, o: { timeoutMs: number; signal?: AbortSignal }): Promise<QmpClient> {
    const deadline = Date.now() + o.timeoutMs
    const client = new QmpClient(await connectUnix(path, deadline, o.signal))
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`QMP: no greeting from QEMU within ${o.timeoutMs / 1000} s`)), Math.max(0, deadline - Date.now()))
        client.greeting = (msg) => {
          clearTimeout(timer)
          if (msg && typeof msg === 'object' && 'QMP' in msg) resolve()
          else reject(new Error(`QMP: expected a greeting, got ${JSON.stringify(msg).slice(0, 200)}`))
        }
        // A connection closed before the greeting.
        client.socket.once('close', () => reject(new Error(client.broken ?? 'QMP connection closed')))
      })
      client.greeting = undefined
      await client.execute('qmp_capabilities')
      return client
    } catch (err) {
      client.close()
      throw err
    }
  }

  /** Runs `command`; resolves with its `return`, or fails naming the command and QEMU's error. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.broken) return Promise.reject(new Error(`QMP ${command}: ${this.broken}`))
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject })
      this.socket.write(`${JSON.stringify({ execute: command, ...(args && { arguments: args }), id })}\n`)
    })
  }

  close(): void {
    this.fail('QMP connection closed by the harness')
    this.socket.destroy()
  }

  /** Closes the connection and resolves once the socket is closed. */
  closed(): Promise<void> {
    const done = new Promise<void>((resolve) => (this.socket.closed ? resolve() : this.socket.once('close', () => resolve())))
    this.close()
    return done
  }

  private onLine(line: string): void {
    let msg: unknown
    try {
      msg = JSON.parse(line)
    } catch {
      return this.fail(`QMP: QEMU sent a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`)
    }
    if (this.greeting) return this.greeting(msg)
    const m = msg as { event?: string; id?: number; return?: unknown; error?: { class?: string; desc?: string } }
    if (typeof m.event === 'string') {
      this.events.push(m as QmpEvent)
      return
    }
    const p = typeof m.id === 'number' ? this.pending.get(m.id) : undefined
    if (!p) return // an answer to nobody: ignored
    this.pending.delete(m.id!)
    if (m.error) p.reject(new Error(`QMP ${p.command} failed: ${m.error.desc ?? m.error.class ?? JSON.stringify(m.error)}`))
    else p.resolve(m.return)
  }

  private fail(why: string): void {
    this.broken ??= why
    for (const p of this.pending.values()) p.reject(new Error(`QMP ${p.command}: ${this.broken}`))
    this.pending.clear()
  }
}
