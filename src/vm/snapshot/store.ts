/**
 * A cache of booted guests: a guest is booted once, its agent greeted, and its whole state saved;
 * later runs restore it in a fraction of a boot. A state fits one QEMU build and one exact machine,
 * so its file name is a hash of both (key.ts); one process makes it while the others wait (lock.ts).
 *
 * <cacheDir>/snapshots/<key>.state   the guest's saved state, its RAM in it, renamed into place only when whole
 * <cacheDir>/snapshots/<key>.json    its record, written last: no record, no snapshot
 * <cacheDir>/snapshots/<key>.lock    held by the one process making it; the others wait
 */
import { mkdir, readdir, readFile, rename, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { GuestVm, type MachineSpec } from '../vm.js'
import { keyInputs, snapshotKey, type SnapshotIds } from './key.js'
import { lockHeld, tryLock } from './lock.js'
import { UserError, errorMessage } from '../../util/errors.js'
import { fsyncPath, sha256File } from '../../util/files.js'
import type { Progress } from '../../util/progress.js'

export { snapshotKey, qemuBuildId, type SnapshotIds } from './key.js'

export interface Snapshot {
  path: string
  key: string
  bytes: number
  /** True when this call made it (booted and saved the guest). */
  made: boolean
  makeMs?: number
  /** Why the snapshot found in the cache was not used (cut short, stale record, rejected by QEMU). */
  remadeBecause?: string
}

/** The guest is ready to be saved (after boot) or to be used (after restore): the caller's agent handshake. */
export type Ready = (vm: GuestVm, phase: 'booted' | 'restored') => Promise<void>

export interface EnsureOptions {
  cacheDir: string
  ids: SnapshotIds
  ready: Ready
  log?: (line: string) => void
  /** The boot's seconds and the console's last line, as it goes. */
  progress?: Progress
  onConsole?: (line: string) => void
  signal?: AbortSignal
  /** From QEMU start to `ready` done, when a snapshot has to be made. */
  bootTimeoutMs: number
}

/** Waits on the lock poll this often. */
const LOCK_POLL_MS = 100
/** Beyond the maker's own deadlines (boot, save), what a waiting process allows for hashing and renames. */
const LOCK_SLACK_MS = 60_000
/** A save's deadline (a 2 GB guest writes in well under a minute). */
const SAVE_TIMEOUT_MS = 120_000

/** A key's inputs as "flag value" words, so that a difference reads "-cpu max", not "max". */
function words(inputs: string[]): string[] {
  return inputs.flatMap((a, i) => (a.startsWith('-') && inputs[i + 1] !== undefined && !inputs[i + 1]!.startsWith('-') ? [] : [i > 0 && inputs[i - 1]!.startsWith('-') ? `${inputs[i - 1]} ${a}` : a]))
}

/**
 * Why a cached snapshot of the same kernel and image is not this one: another QEMU build or other machine
 * arguments make another key, never a restore of the old state. Undefined when there is none.
 */
async function howOthersDiffer(dir: string, key: string, inputs: string[]): Promise<string | undefined> {
  const same = (prefix: string) => (r: string[]) => r.find((i) => i.startsWith(prefix)) === inputs.find((i) => i.startsWith(prefix))
  const now = new Set(words(inputs))
  const short = (w: string) => (w.length > 80 ? `${w.slice(0, 77)}...` : w)
  // The closest one: the fewest words apart.
  let closest: { key: string; was: string[]; is: string[] } | undefined
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (!f.endsWith('.json') || f === `${key}.json`) continue
    const r = await readFile(join(dir, f), 'utf8').then((t) => JSON.parse(t) as SnapshotRecord, () => undefined)
    if (!r?.inputs || !same('kernel:')(r.inputs) || !same('initrd:')(r.inputs)) continue
    const before = new Set(words(r.inputs))
    const was = [...before].filter((w) => !now.has(w))
    const is = [...now].filter((w) => !before.has(w))
    if (!closest || was.length + is.length < closest.was.length + closest.is.length) closest = { key: r.key, was, is }
  }
  if (!closest) return undefined
  return `the cached snapshot ${closest.key} of this kernel and image was made with ${closest.was.map(short).join(', ') || 'the same arguments'}; this one is for ${closest.is.map(short).join(', ') || 'the same arguments'}`
}

interface SnapshotRecord {
  key: string
  /** What the key hashes, in clear. */
  inputs: string[]
  size: number
  mtimeMs: number
  sha256: string
  qemuVersion: string
  saveMs: number
  madeAt: string
  /** The files it was made from: the cache (src/vm/cache.ts) calls it stale once one is gone. */
  files?: { kernel: string; initrd: string }
}

interface Paths {
  dir: string
  state: string
  partial: string
  record: string
  lock: string
}

function pathsFor(cacheDir: string, key: string): Paths {
  const dir = join(cacheDir, 'snapshots')
  const base = join(dir, key)
  return { dir, state: `${base}.state`, partial: `${base}.state.partial`, record: `${base}.json`, lock: `${base}.lock` }
}

/** A state judged bad by its user (QEMU rejected it): identified by its record's hash. */
interface Distrust {
  sha256: string
  why: string
}

/** A usable snapshot, or why not ('absent' when there is none at all). */
async function check(p: Paths, key: string, distrust?: Distrust): Promise<{ record: SnapshotRecord } | { problem: string }> {
  const text = await readFile(p.record, 'utf8').catch(() => undefined)
  const st = await stat(p.state).catch(() => undefined)
  if (text === undefined) return { problem: st ? 'its state file has no record (its save was cut short?)' : 'absent' }
  let record: SnapshotRecord
  try {
    record = JSON.parse(text) as SnapshotRecord
  } catch {
    return { problem: 'its record is not valid JSON' }
  }
  if (record.key !== key) return { problem: `its record is for key ${record.key}, not ${key}` }
  if (!st) return { problem: 'its state file is missing' }
  if (st.size !== record.size) return { problem: `its state file is ${st.size} bytes, the record says ${record.size} (cut short?)` }
  if (Math.round(st.mtimeMs) !== Math.round(record.mtimeMs)) return { problem: 'its state file was modified after it was saved' }
  if (distrust && record.sha256 === distrust.sha256) return { problem: distrust.why }
  return { record }
}

/** The snapshot for `spec`, made now if the cache has none that passes the cheap check. */
export async function ensureSnapshot(spec: MachineSpec, o: EnsureOptions): Promise<Snapshot> {
  return (await ensure(spec, o)).snapshot
}

async function ensure(spec: MachineSpec, o: EnsureOptions, distrust?: Distrust): Promise<{ snapshot: Snapshot; sha256: string }> {
  const key = snapshotKey(spec, o.ids)
  const p = pathsFor(o.cacheDir, key)
  await mkdir(p.dir, { recursive: true })
  const found = (r: SnapshotRecord) => ({ snapshot: { path: p.state, key, bytes: r.size, made: false }, sha256: r.sha256 })
  const deadline = Date.now() + o.bootTimeoutMs + SAVE_TIMEOUT_MS + LOCK_SLACK_MS
  let saidWaiting = false
  for (;;) {
    o.signal?.throwIfAborted()
    const c = await check(p, key, distrust)
    if ('record' in c) return found(c.record)
    const lock = await tryLock(p.lock)
    if ('release' in lock) {
      try {
        // Checked again under the lock: another process may have made it meanwhile.
        const again = await check(p, key, distrust)
        if ('record' in again) return found(again.record)
        return await make(spec, o, p, key, again.problem === 'absent' ? undefined : again.problem)
      } finally {
        await lock.release()
      }
    }
    const owner = lock.owner ? `process ${lock.owner.pid} (since ${lock.owner.since})` : 'another process'
    if (!saidWaiting) o.log?.(`snapshot ${key}: ${owner} is making it; waiting`)
    saidWaiting = true
    o.progress?.(`snapshot ${key}`, `snapshot ${key}: ${owner} is making it; waiting, ${secs(deadline - Date.now())} s left`)
    if (Date.now() >= deadline)
      throw new Error(`snapshot ${key}: ${owner} is still making it after ${Math.round((o.bootTimeoutMs + SAVE_TIMEOUT_MS + LOCK_SLACK_MS) / 1000)} s; if it is stuck, stop it (or remove ${p.lock})`)
    await sleep(LOCK_POLL_MS, undefined, o.signal ? { signal: o.signal } : {})
  }
}

/** Boots, greets, saves to a partial file, then puts state and record in place (in that order). */
async function make(spec: MachineSpec, o: EnsureOptions, p: Paths, key: string, because: string | undefined): Promise<{ snapshot: Snapshot; sha256: string }> {
  const t0 = performance.now()
  const log = (line: string) => o.log?.(`snapshot ${key}: ${line}`)
  // Record first: a state without its record never counts, whatever happens next. The old state goes too, for the space.
  for (const f of [p.record, p.state, p.partial]) await rm(f, { force: true })
  const differs = because ? undefined : await howOthersDiffer(p.dir, key, keyInputs(spec, o.ids))
  log(because ? `making it again (${because}): booting the guest` : `booting the guest${differs ? ` (${differs})` : ''}`)
  let vm: GuestVm | undefined
  try {
    // Under TCG a guest has, rarely, stalled before its console printed anything (once in ~70 boots
    // measured): such a boot is tried once more, and said. One that printed is not.
    for (let attempt = 1; ; attempt++) {
      const tBoot = performance.now()
      vm = await GuestVm.boot(spec, { connectTimeoutMs: o.bootTimeoutMs, ...hooks(o) })
      const booting = vm
      const tick = setInterval(() => {
        const last = booting.consoleTail().filter((l) => l.trim()).at(-1)?.trim()
        o.progress?.(`snapshot ${key}`, `snapshot ${key}: booting the guest, ${secs(performance.now() - tBoot)} s${last ? `: ${last}` : ''}`)
      }, 1000)
      try {
        await readyWithin(vm, 'booted', o.ready, o.bootTimeoutMs - (performance.now() - tBoot), `the guest agent was not ready within ${o.bootTimeoutMs / 1000} s of boot`)
        break
      } catch (err) {
        const silent = vm.consoleTail().every((l) => l.trim() === '')
        if (attempt > 1 || !silent || o.signal?.aborted) throw err
        log(`${errorMessage(err)}, with a silent console; booting it once more`)
        await vm.dispose()
      } finally {
        clearInterval(tick)
      }
    }
    log(`agent ready after ${secs(performance.now() - t0)} s; saving`)
    const saved = await vm.save(p.partial, { timeoutMs: SAVE_TIMEOUT_MS })
    if (saved.bytes === 0) throw new Error('QEMU saved an empty state')
    const [sha256] = await Promise.all([sha256File(p.partial), fsyncPath(p.partial)])
    await rename(p.partial, p.state)
    await fsyncPath(p.dir)
    const st = await stat(p.state)
    const record: SnapshotRecord = {
      key,
      inputs: keyInputs(spec, o.ids),
      size: st.size,
      mtimeMs: st.mtimeMs,
      sha256,
      qemuVersion: o.ids.qemuId.replace(/ size=.*$/, ''),
      saveMs: Math.round(saved.ms),
      madeAt: new Date().toISOString(),
      files: { kernel: spec.kernel, initrd: spec.initrd },
    }
    const tmp = `${p.record}.${process.pid}.tmp`
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`)
    await fsyncPath(tmp)
    await rename(tmp, p.record)
    log(`saved in ${secs(saved.ms)} s: ${Math.round(st.size / 1e6)} MB`)
    const makeMs = performance.now() - t0
    return { snapshot: { path: p.state, key, bytes: st.size, made: true, makeMs, ...(because && { remadeBecause: because }) }, sha256 }
  } catch (err) {
    await vm?.dispose()
    // Judged before the partial file goes and frees the space.
    const full = !o.signal?.aborted && (await diskFull(err, p.dir))
    for (const f of [p.partial, `${p.record}.${process.pid}.tmp`]) await rm(f, { force: true })
    if (o.signal?.aborted) throw err
    if (full)
      throw new UserError(`no space left in ${p.dir} for the guest snapshot (up to ~${spec.memoryMiB} MB): free some, or point OOMLAB_CACHE_DIR elsewhere`, 1)
    throw new Error(`snapshot ${key}: ${errorMessage(err)}`)
  }
}

/** `cat` says so on QEMU's stderr (our error carries it); a record write fails with ENOSPC; or the file system is simply full. */
async function diskFull(err: unknown, dir: string): Promise<boolean> {
  if ((err as NodeJS.ErrnoException).code === 'ENOSPC' || /No space left on device/.test(errorMessage(err))) return true
  const fs = await statfs(dir).catch(() => undefined)
  return fs !== undefined && fs.bavail * fs.bsize < 1 << 20
}

/** Whether a live process holds the snapshot's lock: it is being made now (the cache leaves it alone). */
export function beingMade(cacheDir: string, key: string): Promise<boolean> {
  return lockHeld(pathsFor(cacheDir, key).lock)
}

/** Restores the snapshot (made first if needed); a state QEMU rejects, or whose agent stays silent, is made again once. */
export async function restoreFromSnapshot(spec: MachineSpec, o: EnsureOptions & { timeoutMs: number }): Promise<{ vm: GuestVm; snapshot: Snapshot }> {
  const first = await ensure(spec, o)
  try {
    return { vm: await restoreReady(spec, first.snapshot, o), snapshot: first.snapshot }
  } catch (err) {
    if (o.signal?.aborted) throw err
    const why = `restoring it failed: ${errorMessage(err)}`
    o.log?.(`snapshot ${first.snapshot.key}: ${why}; making it again`)
    const second = await ensure(spec, o, { sha256: first.sha256, why })
    const snapshot = { ...second.snapshot, remadeBecause: why }
    try {
      return { vm: await restoreReady(spec, snapshot, o), snapshot }
    } catch (err2) {
      throw new Error(`snapshot ${snapshot.key}: a freshly made snapshot could not be restored either: ${errorMessage(err2)}`)
    }
  }
}

async function restoreReady(spec: MachineSpec, s: Snapshot, o: EnsureOptions & { timeoutMs: number }): Promise<GuestVm> {
  const t0 = performance.now()
  const vm = await GuestVm.restore(spec, s.path, { timeoutMs: o.timeoutMs, ...hooks(o) })
  try {
    await readyWithin(vm, 'restored', o.ready, o.timeoutMs - (performance.now() - t0), `the guest agent did not answer within ${o.timeoutMs / 1000} s of the restore`)
    return vm
  } catch (err) {
    await vm.dispose()
    throw err
  }
}

function hooks(o: EnsureOptions) {
  return { ...(o.signal && { signal: o.signal }), ...(o.onConsole && { onConsole: o.onConsole }) }
}

/** The caller's handshake, bounded: a deadline, or QEMU gone, ends it with one line. */
export async function readyWithin(vm: GuestVm, phase: 'booted' | 'restored', ready: Ready, ms: number, late: string): Promise<void> {
  const handshake = ready(vm, phase)
  handshake.catch(() => undefined) // it may fail after the race is decided (the socket closes on dispose)
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      handshake,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(late)), Math.max(0, ms)))),
      vm.exited.then(() => {
        throw new Error(`QEMU exited before the guest agent was ready: ${vm.failure() ?? 'no reason on its console'}`)
      }),
    ])
  } catch (err) {
    const why = vm.failure()
    throw why && !errorMessage(err).includes(why) ? new Error(`${errorMessage(err)}; ${why}`) : err
  } finally {
    clearTimeout(timer)
  }
}


const secs = (ms: number) => (ms / 1000).toFixed(1)
