/**
 * Running the experiments of a resolved run: take its report folder, prepare each kernel's guest (or the
 * delegated scope natively), hand vitest the run's configuration, and tell what this run produced, counted
 * from vitest's own results.
 */
import { readFile } from 'node:fs/promises'
import { execa } from 'execa'
import { file as tmpFile } from 'tmp-promise'
import { prepareLabGuest } from '../vm/prepare.js'
import type { PreparedGuest } from '../vm/restore.js'
import { GuestsAhead } from '../vm/ahead.js'
import { LAB_DEFAULTS } from '../vm/lab-defaults.js'
import { projectRoot, oomlabBin, ownModule, vitestBin } from '../util/paths.js'
import { UserError, errorMessage } from '../util/errors.js'
import { inScopeCommand } from '../host/scope.js'
import { reapStaleTrees } from '../os/kill.js'
import { groupEnded } from '../proc/group.js'
import { cgMountPoint } from '../cgroup/cgroupfs.js'
import { StatusLine } from '../util/progress.js'
import { bounded } from '../util/pool.js'
import { reportPaths } from '../report/paths.js'
import { claimReportDir, defaultReportRoot, pointLatest, pruneRuns, runDirOf } from '../report/folder.js'
import type { KernelRun } from '../report/matrix.js'
import type { Tally } from '../report/results.js'
import { guestChoiceOf, workersOf, writeRunConfig, type RunConfig } from '../run/config.js'
import { loadVitest, startVitestHere, type VitestExit } from '../vitest/start.js'
import { ForksAhead } from '../vitest/forks.js'
import OomlabReporter from '../vitest/reporter.js'
import { collectRuns, readTally } from '../run/report.js'
import { imageAddition, imagesOf, specImage } from '../run/images.js'
import { writeReport } from '../report/write.js'

/** The CLI's messages, and the live line of long steps (kernel download, image, snapshot) on a terminal. */
const status = new StatusLine(process.stderr)
export const log = status.log
export const progress = status.progress
export const endProgress = () => status.end()

/** On GitHub Actions, vitest's own reporter annotates the failing spec (it adds itself only when no reporter is named). */
const GITHUB_REPORTER = process.env.GITHUB_ACTIONS === 'true' ? ['github-actions'] : []

/** How long an interrupted vitest's workers have to tear down before they are killed. */
const STOP_GRACE_MS = 10_000

/**
 * The experiments' vitest, in this process (the CLI's, or `oomlab __in-scope`'s in a delegated scope), given the
 * run's configuration through vitest's Node API. On an interrupt its forks tear down their trees or guests
 * (src/vitest/start.ts); what is left after 10 s is killed.
 */
export function runVitestHere(config: RunConfig, signal: AbortSignal, forks?: ForksAhead): Promise<VitestExit> {
  const paths = reportPaths(config.report)
  return startVitestHere(config, {
    ...(forks && { forks }),
    project: 'experiments*',
    // Ours as an object from this bundle (vitest would load it through its module runner); the JUnit one extends vitest's own class, loaded with vitest.
    reporters: ['default', 'json', new OomlabReporter(), ownModule('src/vitest/junit'), ...GITHUB_REPORTER],
    outputJson: paths.vitestJson,
    signal,
    ...(config.runTimeoutMs !== undefined && { timeoutMs: config.runTimeoutMs }),
    graceMs: STOP_GRACE_MS,
  })
}

/**
 * A child: vitest for the unit tests, or `oomlab __in-scope` in a native run's delegated scope. The scope's
 * process runs in a process group of its own and an interrupt goes to the whole group, so its vitest's forks
 * get it too and tear down their trees before the CLI exits; what is left after 10 s is killed.
 */
async function runChild(command: string[], o: { ownGroup: boolean; env: Record<string, string>; signal: AbortSignal; timeoutMs?: number }): Promise<VitestExit> {
  const [file, ...rest] = command
  const child = execa(file!, rest, {
    cwd: projectRoot,
    stdio: 'inherit',
    reject: false,
    env: o.env,
    ...(o.ownGroup ? { detached: true } : { cancelSignal: o.signal, forceKillAfterDelay: 5000 }),
    ...(o.timeoutMs !== undefined && { timeout: o.timeoutMs }),
  })
  const toGroup = (sig: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, sig)
    } catch {
      /* the group is gone */
    }
  }
  let force: NodeJS.Timeout | undefined
  let forceAt = Infinity
  const onAbort = () => {
    toGroup('SIGTERM')
    forceAt = performance.now() + STOP_GRACE_MS
    force = setTimeout(() => toGroup('SIGKILL'), STOP_GRACE_MS)
  }
  if (o.ownGroup) o.signal.addEventListener('abort', onAbort, { once: true })
  const r = await child
  if (o.ownGroup) {
    o.signal.removeEventListener('abort', onAbort)
    clearTimeout(force)
    // The leader may exit before its forks are done tearing down their trees: they get the rest of the
    // grace; then they are killed, and are dead (not just signalled) before the caller reaps their trees.
    if (o.signal.aborted && child.pid !== undefined) {
      const left = await groupEnded(child.pid, Math.max(0, forceAt - performance.now()))
      if (left.length > 0) {
        toGroup('SIGKILL')
        await groupEnded(child.pid, 2000)
      }
    }
  }
  return { exitCode: r.exitCode ?? 1, timedOut: r.timedOut }
}

/** The unit tests, counted from vitest's JSON reporter (in a temp file that goes with the run). */
export async function runUnitTests(signal: AbortSignal): Promise<{ passed: number; failed: number; skipped: number }> {
  const json = await tmpFile({ prefix: 'oomlab-unit-', postfix: '.json' })
  try {
    const command = [process.execPath, vitestBin(), 'run', '--config', ownModule('vitest.config'), '--project', 'unit', '--reporter=default', '--reporter=json', `--outputFile.json=${json.path}`]
    const r = await runChild(command, { ownGroup: false, env: process.env as Record<string, string>, signal })
    try {
      const j = JSON.parse(await readFile(json.path, 'utf8')) as { numPassedTests: number; numFailedTests: number; numPendingTests: number; numFailedTestSuites: number }
      // A test file that failed outside its tests (an import error) counts as one failure.
      const failed = j.numFailedTests + (j.numFailedTests === 0 && j.numFailedTestSuites > 0 ? j.numFailedTestSuites : 0)
      return { passed: j.numPassedTests, failed: failed || (r.exitCode !== 0 ? 1 : 0), skipped: j.numPendingTests }
    } catch {
      return { passed: 0, failed: 1, skipped: 0 }
    }
  } finally {
    await json.cleanup()
  }
}

export interface RunOutcome {
  config: RunConfig
  tally: Tally
  runs: KernelRun[]
  /** Kernels whose guest could not be prepared, with why. */
  failures: Map<string, string>
  /** Why the run as a whole failed (vitest died, timed out, interrupted), beyond failed tests. */
  failure?: string
  interrupted: boolean
}

/** Each kernel's guest prepared (fetched, snapshotted), `jobs` at a time; a kernel that cannot be is named, the others go on. */
async function prepareGuests(config: RunConfig, signal: AbortSignal): Promise<{ prepared: Record<string, PreparedGuest>; images: Record<string, Record<string, PreparedGuest>>; failures: Map<string, string> }> {
  const m = config.machine
  const prepared: Record<string, PreparedGuest> = {}
  const images: Record<string, Record<string, PreparedGuest>> = {}
  const failures = new Map<string, string>()
  if (m.kind !== 'guest') return { prepared, images, failures }
  const many = config.kernels.length > 1
  // The images the specs ask for besides the lab's (@oomlab-image): each kernel's guest of each.
  const wanted = imagesOf(config.specs)
  await bounded(config.kernels, config.jobs, async (k) => {
    const tag = many ? `[${k.name}] ` : ''
    try {
      const o = { log: (line: string) => log(`${tag}${line}`), progress: (key: string, text: string, f?: number) => progress(`${k.name} ${key}`, `${tag}${text}`, f), signal }
      const guest = await prepareLabGuest(guestChoiceOf(m, k), o)
      for (const name of wanted) (images[k.name] ??= {})[name] = await prepareLabGuest({ ...guestChoiceOf(m, k), addition: imageAddition(name) }, o)
      prepared[k.name] = guest
    } catch (err) {
      if (signal.aborted || (!many && err instanceof UserError)) throw err
      log(`${tag}FAILED: ${errorMessage(err)}`)
      failures.set(k.name, errorMessage(err))
    }
  })
  endProgress()
  return { prepared, images, failures }
}

/**
 * The run's first guests, restored ahead while vitest starts (as many as it has workers, no more than its specs);
 * each experiment claims one (src/vm/ahead.ts).
 */
async function restoreGuestsAhead(guest: PreparedGuest, specs: number, jobs: number, o: { log: (line: string) => void; signal: AbortSignal }): Promise<GuestsAhead | undefined> {
  const count = Math.min(jobs, specs)
  return count > 0 ? GuestsAhead.start(guest.spec, guest.snapshot, count, { timeoutMs: LAB_DEFAULTS.restoreTimeoutMs, ...o }) : undefined
}

/**
 * The whole run: its folder taken (a second run on it is refused), guests prepared, vitest run with the
 * configuration, and the report written from this run's results only. `prepared` skips preparing (the soak
 * prepares once for many rounds).
 */
export async function runExperiments(config: RunConfig, signal: AbortSignal, o: { prepared?: Record<string, PreparedGuest> } = {}): Promise<RunOutcome> {
  using folder = claimReportDir(config.report, config.id)
  let failures = new Map<string, string>()
  let failure: string | undefined
  let exit: VitestExit | undefined
  if (config.machine.kind === 'guest') {
    // vitest and its forks load while the guests are prepared and restored.
    void loadVitest()
    using forks = ForksAhead.start(workersOf(config))
    const p = o.prepared ? { prepared: o.prepared, images: {}, failures } : await prepareGuests(config, signal)
    failures = p.failures
    config.prepared = p.prepared
    config.preparedImages = p.images
    const names = Object.keys(p.prepared)
    if (names.length > 0) {
      const one = config.kernels.length === 1 ? p.prepared[names[0]!] : undefined
      // Only the specs of the lab's image claim its guests restored ahead.
      const labSpecs = config.specs.length === 0 ? 1 : config.specs.filter((s) => specImage(s) === undefined).length
      await using ahead = one && labSpecs > 0 && config.machine.restoreAhead ? await restoreGuestsAhead(one, labSpecs, config.jobs, { log, signal }) : undefined
      if (one && ahead) config.prepared = { [names[0]!]: { ...one, ahead: ahead.socketPath } }
      writeRunConfig(config)
      exit = await runVitestHere(config, signal, forks)
    }
  } else {
    const m = config.machine
    const path = writeRunConfig(config)
    // On a systemd host vitest runs in the run's delegated scope, in a process of its own there, started with the run's configuration.
    exit = m.scope
      ? await runChild(inScopeCommand(m.scope, [process.execPath, oomlabBin, '__in-scope', path]), { ownGroup: true, env: process.env as Record<string, string>, signal, ...(config.runTimeoutMs !== undefined && { timeoutMs: config.runTimeoutMs }) })
      : await runVitestHere(config, signal)
    // Interrupted: whatever tree a killed worker could not remove goes now, not at the next run.
    if (signal.aborted && !m.scope) reapStaleTrees(m.cgroupRoot ?? cgMountPoint() ?? '/sys/fs/cgroup', log)
  }
  const tally = await readTally(config)
  if (exit && !signal.aborted) failure = vitestFailure(exit, config, tally)
  const releases = Object.fromEntries(Object.entries(config.prepared ?? {}).map(([k, g]) => [k, g.kernel.release]))
  const runs = await collectRuns(config, tally, { failures, releases, ...(failure !== undefined && { runFailure: failure }) })
  await writeReport(config.report, runs)
  folder.finish()
  const root = defaultReportRoot()
  if (config.report === runDirOf(root, config.id) && !signal.aborted) {
    pointLatest(root, config.report)
    pruneRuns(root)
  }
  return { config, tally, runs, failures, ...(failure !== undefined && { failure }), interrupted: signal.aborted }
}

/** What went wrong with vitest beyond the tests it reported: a deadline, a crash, a run that reported nothing. */
function vitestFailure(r: VitestExit, config: RunConfig, t: Tally): string | undefined {
  if (r.timedOut) return `the experiments did not finish within ${(config.runTimeoutMs ?? 0) / 1000} s (--timeout)`
  const m = config.machine
  if (t.outcomes.length === 0 && m.kind === 'native' && m.scope)
    return `the experiments did not start in the delegated scope ${m.scope} (systemd-run's or oomlab's message is above); name a delegated cgroup of your own with --cgroup-root instead`
  if (t.outcomes.length === 0) return `vitest exited with ${r.exitCode} and reported no experiment (its message is above)`
  if (r.exitCode !== 0 && t.failed === 0) return `vitest exited with ${r.exitCode} though no test failed (its message is above)`
  return undefined
}
