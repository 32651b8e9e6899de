/**
 * The kernel log as a Lab reads it: records from a cursor on, fed by whoever follows the log (src/kmsg/follower.ts
 * here, the agent in a guest), and the markers that relate the log's clock to ours.
 */
import { openSync, writeSync, closeSync, constants } from 'node:fs'
import { KernelTimeoutError } from '../util/errors.js'
import type { KmsgRecord } from './record.js'

const KMSG = '/dev/kmsg'

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
