/**
 * This machine's /dev/kmsg followed from a cursor on, through `cat`, so that new records arrive as events
 * (Node cannot poll(2) a character device, and a blocking read in its thread pool could not be cancelled).
 */
import { openSync, readSync, closeSync, constants } from 'node:fs'
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

