/**
 * Waiting on cgroupfs without sleeps: the kernel raises a file-modified event (kernfs_notify) when
 * cgroup.events or memory.events change, and fs.watch delivers it through inotify.
 */
import { watch, readFileSync, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import { KernelTimeoutError } from '../util/errors.js'
import { parseKeyed } from './cgroupfs.js'

export interface WaitOptions {
  timeoutMs: number
  signal?: AbortSignal
}

/**
 * Reads `file` now and on every modification until `done(value)`; resolves with that value.
 * Fails with a KernelTimeoutError naming `expected` and the last value seen.
 */
export function waitForFile<T>(
  file: string,
  parse: (text: string) => T,
  done: (value: T) => boolean,
  expected: string,
  describe: (value: T) => string,
  { timeoutMs, signal }: WaitOptions,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let watcher: FSWatcher | undefined
    let last = '(nothing read yet)'
    let settled = false
    const finish = (fn: () => void) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      watcher?.close()
      signal?.removeEventListener('abort', onAbort)
      fn()
    }
    // A synchronous read: cgroupfs answers from memory, and a trip through libuv's thread pool
    // (open, stat, read, close) cost the kill detection tens of milliseconds under emulation.
    const check = () => {
      if (settled) return
      try {
        const value = parse(readFileSync(file, 'utf8'))
        last = describe(value)
        if (done(value)) finish(() => resolve(value))
      } catch (err) {
        finish(() => reject(err))
      }
    }
    const onAbort = () => finish(() => reject(signal?.reason ?? new Error('aborted')))
    const timer = setTimeout(
      () => finish(() => reject(new KernelTimeoutError(`${expected} in ${file}`, last, timeoutMs))),
      timeoutMs,
    )
    signal?.addEventListener('abort', onAbort)
    try {
      watcher = watch(file, { persistent: true }, check)
      watcher.on('error', (err) => finish(() => reject(err)))
    } catch (err) {
      return finish(() => reject(err))
    }
    check()
  })
}

const describeKeyed = (m: Map<string, number>) => [...m].map(([k, v]) => `${k} ${v}`).join(', ') || '(empty)'

/** Waits for a key of a keyed file (memory.events, cgroup.events) to satisfy `done`. */
export function waitForKey(
  cg: string,
  file: string,
  key: string,
  done: (value: number) => boolean,
  expected: string,
  opts: WaitOptions,
): Promise<Map<string, number>> {
  return waitForFile(
    join(cg, file),
    parseKeyed,
    (m) => {
      const v = m.get(key)
      return v !== undefined && done(v)
    },
    expected,
    describeKeyed,
    opts,
  )
}

/** Waits until the cgroup and its descendants hold no process ("populated 0" in cgroup.events). */
export function waitUntilEmpty(cg: string, opts: WaitOptions): Promise<Map<string, number>> {
  return waitForKey(cg, 'cgroup.events', 'populated', (v) => v === 0, '"populated 0"', opts)
}
