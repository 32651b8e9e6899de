/**
 * A run's report folder is the run's own. By default each run gets a fresh `reports/runs/<id>/` and
 * `reports/latest` points at the last one that completed; `--report DIR` names the folder instead. A folder
 * of ours carries a marker listing the files a run made there: the next run on it removes those and nothing
 * else, a non-empty folder without the marker is refused, and a lock refuses a second run on it at once.
 */
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs'
import { homedir } from 'node:os'
import { basename, dirname, join, relative, resolve, sep } from 'node:path'
import { createHash } from 'node:crypto'
import { cacheDir } from '../util/paths.js'
import { UserError } from '../util/errors.js'
import { ownerIsGone, selfOwner, type TreeOwner } from '../proc/owner.js'

export const MARKER = '.oomlab-report'
const LOCK = '.oomlab-report.lock'
/** What an older oomlab wrote into reports/latest/ itself. */
const OLD_LAYOUT = ['summary.txt', 'report.md', 'report.json', 'junit.xml', 'vitest.json', 'figures', 'evidence']

/** Runs kept under the default root; older ones (of ours) are removed as new ones start. */
export const RUNS_KEPT = 20

interface Marker {
  tool: 'oom-group-lab'
  run: string
  /** Paths relative to the folder, of the files the run made. */
  files: string[]
}

/**
 * The default root of reports: `reports/` of the folder the command runs in; inside a Linux source tree
 * (`git bisect run ... --kernel-src .`), the cache's `reports/<tree>-<id>/` instead, so that nothing is
 * written into the tree (its files decide the kernel oomlab builds from it).
 */
export function defaultReportRoot(cwd = process.cwd()): string {
  const tree = kernelTreeAbove(resolve(cwd))
  if (!tree) return resolve(cwd, 'reports')
  return join(cacheDir(), 'reports', `${basename(tree)}-${createHash('sha256').update(tree).digest('hex').slice(0, 8)}`)
}

/** The Linux source tree `dir` is in (its top has Kconfig, Makefile and arch/), if any. */
function kernelTreeAbove(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'Kconfig')) && existsSync(join(d, 'Makefile')) && existsSync(join(d, 'arch'))) return d
    if (dirname(d) === d) return undefined
  }
}

export const runDirOf = (root: string, id: string) => join(root, 'runs', id)

/** Refuses a folder a report must not go to: one line naming it and why. */
export function checkReportDir(dir: string, o: { forbidden?: string[] } = {}): string {
  if (dir.trim() === '') throw new UserError('--report "": name a folder for the report')
  const abs = resolve(dir)
  const refuse = (why: string) => new UserError(`--report ${dir}: ${why}; name an empty or new folder, or one an earlier oomlab run made`)
  if (abs === sep) throw refuse('not the filesystem root')
  if (abs === resolve(homedir())) throw refuse('not your home folder')
  for (const f of o.forbidden ?? []) if (abs === resolve(f)) throw refuse('not the project folder itself')
  if (!existsSync(abs)) return abs
  if (!statSync(abs).isDirectory()) throw refuse('it is not a folder')
  const entries = readdirSync(abs)
  if (entries.length > 0 && !entries.includes(MARKER)) throw refuse(`it holds files not made by oomlab (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''})`)
  return abs
}

function readMarker(dir: string): Marker | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dir, MARKER), 'utf8')) as Marker
    return m.tool === 'oom-group-lab' && Array.isArray(m.files) ? m : undefined
  } catch {
    return undefined
  }
}

/** Every file below dir (relative), but the marker and the lock. */
function filesBelow(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .map(String)
    .filter((f) => f !== MARKER && f !== LOCK)
    .filter((f) => {
      try {
        return !lstatSync(join(dir, f)).isDirectory()
      } catch {
        return false
      }
    })
}

/** Removes the empty folders below dir (deepest first), and dir itself if `self`. */
function removeEmptyDirs(dir: string, self: boolean): void {
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return
  }
  for (const e of entries) if (e.isDirectory()) removeEmptyDirs(join(dir, e.name), true)
  if (self && readdirSync(dir).length === 0) rmdirSync(dir)
}

/** Removes what an earlier run of ours listed in its marker: those files only. */
function removeMarkedFiles(dir: string, m: Marker): void {
  for (const f of m.files) {
    const p = resolve(dir, f)
    // A marker names files inside its folder; anything else in it is not ours to remove.
    if (relative(dir, p).startsWith('..') || p === dir) continue
    rmSync(p, { force: true })
  }
  removeEmptyDirs(dir, false)
}

export interface ClaimedFolder extends Disposable {
  dir: string
  /** Lists the files the run made in the marker; the lock stays until disposal. */
  finish(): void
}

/**
 * Takes the folder for a run: refuses it when another live run holds it, removes the files of the last run
 * of ours there, and remembers what else it holds (a user's own files), which the marker will never list.
 */
export function claimReportDir(dir: string, run: string, owner: TreeOwner = selfOwner()): ClaimedFolder {
  const abs = checkReportDir(dir)
  mkdirSync(abs, { recursive: true })
  takeLock(abs, owner)
  let released = false
  const release = () => {
    if (released) return
    released = true
    rmSync(join(abs, LOCK), { force: true })
  }
  try {
    const old = readMarker(abs)
    if (old) removeMarkedFiles(abs, old)
    const before = new Set(filesBelow(abs))
    const write = (files: string[]) => writeFileSync(join(abs, MARKER), `${JSON.stringify({ tool: 'oom-group-lab', run, files } satisfies Marker, null, 2)}\n`)
    write([])
    return {
      dir: abs,
      finish: () => write(filesBelow(abs).filter((f) => !before.has(f)).sort()),
      [Symbol.dispose]: release,
    }
  } catch (err) {
    release()
    throw err
  }
}

function takeLock(dir: string, owner: TreeOwner): void {
  const path = join(dir, LOCK)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx')
      writeSync(fd, JSON.stringify(owner))
      closeSync(fd)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let holder: TreeOwner | undefined
    try {
      holder = JSON.parse(readFileSync(path, 'utf8')) as TreeOwner
    } catch {
      holder = undefined
    }
    if (holder && !ownerIsGone(holder)) throw new UserError(`--report ${dir}: another oomlab run (pid ${holder.pid}) is writing there; wait for it, or name another folder`)
    rmSync(path, { force: true })
  }
  throw new UserError(`--report ${dir}: could not take its lock (${path})`)
}

/** Points `<root>/latest` at a run's folder, replacing the link at once (never a moment without one). */
export function pointLatest(root: string, runDir: string): void {
  const latest = join(root, 'latest')
  if (existsSync(latest) && !lstatSync(latest).isSymbolicLink()) {
    // An older oomlab wrote its report straight into latest/: it becomes a run of its own; anything else is not ours to move.
    if (!readdirSync(latest).every((f) => OLD_LAYOUT.includes(f))) return
    mkdirSync(join(root, 'runs'), { recursive: true })
    renameSync(latest, join(root, 'runs', `${new Date(statSync(latest).mtimeMs).toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}-earlier`))
  }
  const tmp = `${latest}.${process.pid}.partial`
  rmSync(tmp, { force: true })
  symlinkSync(relative(root, runDir), tmp)
  renameSync(tmp, latest)
}

/** What `<root>/latest` points at, if it is our link. */
export function latestRun(root: string): string | undefined {
  const latest = join(root, 'latest')
  try {
    return resolve(root, readlinkSync(latest))
  } catch {
    return undefined
  }
}

/** Removes all but the newest `keep` run folders of ours under `<root>/runs` (never one a live run holds). */
export function pruneRuns(root: string, keep = RUNS_KEPT): string[] {
  const runs = join(root, 'runs')
  let ids: string[]
  try {
    ids = readdirSync(runs).sort()
  } catch {
    return []
  }
  const keepAlso = latestRun(root)
  const removed: string[] = []
  for (const id of ids.slice(0, Math.max(0, ids.length - keep))) {
    const dir = join(runs, id)
    if (dir === keepAlso || existsSync(join(dir, LOCK))) continue
    const m = readMarker(dir)
    if (!m) continue
    removeMarkedFiles(dir, m)
    rmSync(join(dir, MARKER), { force: true })
    try {
      removeEmptyDirs(dir, true)
      removed.push(dir)
    } catch {
      /* a file of the user's is still there: the folder stays */
    }
  }
  if (existsSync(runs) && readdirSync(runs).length === 0) rmdirSync(runs)
  return removed
}
