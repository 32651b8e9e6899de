/**
 * The kernel log from a cursor on: records with a sequence number above the one current when
 * the reader opened. Follows /dev/kmsg through `cat` so that new records arrive as events
 * (Node cannot poll(2) a character device, and a blocking read in its thread pool could not be
 * cancelled).
 */
import { openSync, readSync, writeSync, closeSync, constants } from 'node:fs'
import { execa, type ResultPromise } from 'execa'
import { KernelTimeoutError } from '../util/errors.js'
import { setprivPath } from '../proc/spawn.js'
import { RecordSplitter, parseRecord, type KmsgRecord } from './record.js'

const KMSG = '/dev/kmsg'

/** Sequence number of the newest record now in the log (reads the whole buffer without blocking). */
export function currentSeq(): number {
  const fd = openSync(KMSG, constants.O_RDONLY | constants.O_NONBLOCK)
  const buf = Buffer.alloc(8192)
  let last = -1
  try {
    for (;;) {
      let n: number
      try {
        n = readSync(fd, buf, 0, buf.length, null)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EAGAIN') break
        if (code === 'EPIPE') continue // overwritten while reading: the next read resynchronises
        throw err
      }
      const rec = parseRecord(buf.toString('utf8', 0, n))
      if (rec) last = rec.seq
    }
  } finally {
    closeSync(fd)
  }
  return last
}

/** CLOCK_MONOTONIC in microseconds (what node's hrtime reads). */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n)

export interface Marker {
  text: string
  /** CLOCK_MONOTONIC just before and after the write. */
  beforeUs: number
  afterUs: number
}

/**
 * Writes `text` into the kernel log. Its record's timestamp, against the monotonic clock read around
 * the write, maps the kernel log's clock onto ours. For a guest's own log only: a host's log is not ours.
 */
export function writeMarker(text: string, level = 5): Marker {
  const fd = openSync(KMSG, constants.O_WRONLY)
  try {
    const beforeUs = monotonicUs()
    // Facility 1 (user): a record of ours, never taken for the kernel's. Without its newline the record
    // stays open for a continuation, and readers see it only once the next record closes it.
    writeSync(fd, `<${8 + level}>${text}\n`)
    return { text, beforeUs, afterUs: monotonicUs() }
  } finally {
    closeSync(fd)
  }
}

/** How far the kernel log's clock is ahead of CLOCK_MONOTONIC (µs), from a marker's record, and how sure. */
export function clockOffset(records: readonly KmsgRecord[], m: Marker): { offsetUs: number; uncertaintyUs: number } | undefined {
  const rec = records.find((r) => r.message === m.text)
  if (!rec) return undefined
  return { offsetUs: rec.usec - (m.beforeUs + m.afterUs) / 2, uncertaintyUs: (m.afterUs - m.beforeUs) / 2 }
}

/** One wait on the follower: given each batch of fresh records, and the cause when the follower breaks. */
interface Waiter {
  records(fresh: KmsgRecord[]): void
  broken(why: string): void
}

/**
 * Follows this machine's /dev/kmsg from a cursor: every later record goes to the listener, in order.
 * `caughtUp(seq)` resolves once the record `seq` (or a later one) has been given out. Once the reader
 * has stopped (/dev/kmsg overran it, cat died), every wait fails at once with that cause: no record
 * will come, so waiting out a deadline would only hide why.
 */
export class KmsgFollower implements AsyncDisposable {
  private readonly follower: ResultPromise
  private closing = false
  private lastSeq: number
  private readonly waiters = new Set<Waiter>()
  /** Why the follower stopped early: waits fail with this. */
  broken: string | undefined

  private constructor(
    readonly cursor: number,
    onRecords: (records: KmsgRecord[]) => void,
    onBroken: (why: string) => void,
  ) {
    this.lastSeq = cursor
    // --pdeathsig: the reader dies with us even when we are SIGKILLed and cannot stop it.
    this.follower = execa(setprivPath(), ['--pdeathsig', 'KILL', '--', 'cat', KMSG], { stdout: 'pipe', stderr: 'pipe', stdin: 'ignore', buffer: false, reject: false })
    const splitter = new RecordSplitter()
    this.follower.stdout!.setEncoding('utf8')
    this.follower.stdout!.on('data', (chunk: string) => {
      const fresh = splitter.push(chunk).filter((r) => r.seq > cursor)
      if (fresh.length === 0) return
      this.lastSeq = fresh.at(-1)!.seq
      onRecords(fresh)
      for (const w of [...this.waiters]) w.records(fresh)
    })
    void this.follower.then((r) => {
      if (this.closing) return
      this.broken = `the kernel log reader (cat ${KMSG}) stopped: ${r.exitCode ?? r.signal} ${String(r.stderr ?? '').trim()}`.trim()
      onBroken(this.broken)
      for (const w of [...this.waiters]) w.broken(this.broken)
    })
  }

  /** Opens the log with the cursor at its current end. */
  static open(onRecords: (records: KmsgRecord[]) => void, onBroken: (why: string) => void = () => undefined): KmsgFollower {
    return new KmsgFollower(currentSeq(), onRecords, onBroken)
  }

  /** The reader process's PID (cat), while it runs. */
  get readerPid(): number | undefined {
    return this.follower.pid
  }

  /**
   * Resolves with `now()` if defined, else with the first defined `found(fresh)` of a later batch;
   * fails at once with the cause if the follower is or becomes broken, and after `timeoutMs` with `late()`.
   */
  private wait<T>(now: () => T | undefined, found: (fresh: KmsgRecord[]) => T | undefined, expected: string, late: () => Error, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const finish = (fn: () => void) => {
        clearTimeout(timer)
        this.waiters.delete(w)
        fn()
      }
      const w: Waiter = {
        records: (fresh) => {
          const v = found(fresh)
          if (v !== undefined) finish(() => resolve(v))
        },
        broken: (why) => finish(() => reject(new Error(`${why}; was waiting for ${expected}`))),
      }
      const timer = setTimeout(() => finish(() => reject(late())), timeoutMs)
      this.waiters.add(w)
      const v = now()
      if (v !== undefined) finish(() => resolve(v))
      else if (this.broken !== undefined) w.broken(this.broken)
    })
  }

  /** Resolves with the first record from now on that passes `match` (given out to the listener first). */
  seen(match: (r: KmsgRecord) => boolean, timeoutMs: number): Promise<KmsgRecord> {
    const expected = 'a record of ours to come back from the kernel log'
    return this.wait(
      () => undefined,
      (fresh) => fresh.find(match),
      expected,
      () => new KernelTimeoutError(expected, `record ${this.lastSeq}`, timeoutMs),
      timeoutMs,
    )
  }

  /** Resolves once every record up to `seq` has been given out; fails after `timeoutMs`. */
  async caughtUp(seq: number, timeoutMs: number): Promise<void> {
    const expected = `the kernel log reader to reach record ${seq}`
    const reached = () => (this.lastSeq >= seq ? true : undefined)
    await this.wait(reached, reached, expected, () => new KernelTimeoutError(expected, `record ${this.lastSeq}`, timeoutMs), timeoutMs)
  }

  async close(): Promise<void> {
    this.closing = true
    this.follower.kill('SIGKILL')
    await this.follower
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/**
 * The kernel log as a Lab sees it: the records since its cursor, fed by whoever follows the log
 * (a KmsgFollower here, or an agent in a guest), with waits on what they say.
 */
export class KernelLog {
  private readonly recs: KmsgRecord[] = []
  private readonly listeners = new Set<() => void>()
  /** Why the feed stopped: waits fail with this. */
  private broken: string | undefined

  push(records: readonly KmsgRecord[]): void {
    this.recs.push(...records)
    this.notify()
  }

  fail(why: string): void {
    this.broken = why
    this.notify()
  }

  private notify() {
    for (const l of [...this.listeners]) l()
  }

  /** Records since the cursor, oldest first. */
  get records(): readonly KmsgRecord[] {
    return this.recs
  }

  /** Resolves with `find(records)` once it is defined; fails after `timeoutMs` naming `expected`. */
  waitFor<T>(find: (records: readonly KmsgRecord[]) => T | undefined, expected: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        let found: T | undefined
        try {
          found = find(this.recs)
        } catch (err) {
          done()
          return reject(err)
        }
        if (found !== undefined) {
          done()
          return resolve(found)
        }
        if (this.broken) {
          done()
          reject(new Error(`${this.broken}; was waiting for ${expected}`))
        }
      }
      const done = () => {
        clearTimeout(timer)
        this.listeners.delete(check)
      }
      const timer = setTimeout(() => {
        done()
        const last = this.recs.at(-1)
        reject(new KernelTimeoutError(`kernel log: ${expected}`, last ? last.message : '(no record since the cursor)', timeoutMs))
      }, timeoutMs)
      this.listeners.add(check)
      check()
    })
  }
}
