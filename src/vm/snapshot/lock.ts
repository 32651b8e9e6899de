/**
 * The snapshot maker's lock: created with O_EXCL, holding the maker's PID and its start time, so that a
 * lock left by a process that died (or a PID reused since) is recognised as stale and taken over.
 */
import { open, readFile, rm, stat } from 'node:fs/promises'
import { readStat } from '../../proc/procfs.js'

/** An unreadable lock (its maker between create and write) counts as held for this long. */
const FRESH_LOCK_MS = 10_000

interface LockOwner {
  pid: number
  /** /proc/PID/stat field 22 (starttime): tells a reused PID apart. */
  start: string
  since: string
}

function procStart(pid: number): string | undefined {
  const st = readStat(pid)
  return st === undefined ? undefined : String(st.startTime)
}

const alive = (o: LockOwner) => procStart(o.pid) === o.start

export async function tryLock(path: string): Promise<{ release: () => Promise<void> } | { owner: LockOwner | undefined }> {
  for (let attempt = 0; ; attempt++) {
    const me: LockOwner = { pid: process.pid, start: procStart(process.pid) ?? '', since: new Date().toISOString() }
    try {
      const fh = await open(path, 'wx')
      try {
        await fh.writeFile(JSON.stringify(me))
      } finally {
        await fh.close()
      }
      return { release: () => rm(path, { force: true }) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const text = await readFile(path, 'utf8').catch(() => undefined)
    if (text === undefined) continue // released just now: try again
    const owner = parseOwner(text)
    const stale = owner ? !alive(owner) : Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now()) > FRESH_LOCK_MS
    if (!stale || attempt > 0) return { owner }
    await breakStale(path, text)
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as LockOwner
    return typeof o.pid === 'number' && typeof o.start === 'string' ? o : undefined
  } catch {
    return undefined
  }
}

/**
 * Removes a stale lock, but only the one that was judged stale: breakers take turns under a second
 * lock and compare contents, so that nobody removes a lock another process has just created.
 */
async function breakStale(path: string, seen: string): Promise<void> {
  const breaker = `${path}.break`
  try {
    await (await open(breaker, 'wx')).close()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    // Held for milliseconds; an old one belongs to a breaker that died.
    const st = await stat(breaker).catch(() => undefined)
    if (st && Date.now() - st.mtimeMs > FRESH_LOCK_MS) await rm(breaker, { force: true })
    return
  }
  try {
    if ((await readFile(path, 'utf8').catch(() => undefined)) === seen) await rm(path, { force: true })
  } finally {
    await rm(breaker, { force: true })
  }
}

/** Whether a live process holds the lock at `path` (or one just created, not yet written). */
export async function lockHeld(path: string): Promise<boolean> {
  const text = await readFile(path, 'utf8').catch(() => undefined)
  if (text === undefined) return false
  const owner = parseOwner(text)
  return owner ? alive(owner) : Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? 0) <= FRESH_LOCK_MS
}
