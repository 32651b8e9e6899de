/**
 * Running the experiment specs where they can run: natively when the host passes preflight
 * (cgroup v2 with memory, root), otherwise in the disposable VM. Either way the evidence lands in
 * the report folder and the caller learns the kernel, the counts and any failure.
 */
import { writeFile, readFile, readdir, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { execa } from 'execa'
import { preflight, formatCheck } from '../host/preflight.js'
import { prepareLabGuest } from '../vm/prepare.js'
import type { PreparedGuest } from '../vm/restore.js'
import { file as tmpFile } from 'tmp-promise'
import { PREPARED_ENV } from '../experiment/global-setup.js'
import { readEvidenceDir } from '../report/evidence.js'
import { formatSummary } from '../report/summary.js'
import { writeReport } from '../report/write.js'
import { DEFAULT_KERNEL } from '../vm/kernels.js'
import { projectRoot, oomlabBin, ownModule, userReports, vitestBin } from '../util/paths.js'
import { UserError } from '../util/errors.js'
import { isSystemdHost, scopeUnit, inScopeCommand } from '../host/scope.js'
import { selfOwner } from '../proc/owner.js'
import { reapStaleTrees } from '../os/kill.js'
import { groupEnded } from '../proc/group.js'
import { cgMountPoint } from '../cgroup/cgroupfs.js'
import type { RunArgs } from './args.js'
import { StatusLine } from '../util/progress.js'
import { GuestsAhead } from '../vm/ahead.js'
import { LAB_DEFAULTS } from '../vm/restore.js'
import { experimentJobs } from '../util/jobs.js'
import { SPEC_FILE } from '../report/paths.js'

export interface ExperimentsOutcome {
  where: 'native' | 'vm'
  /** Whether the specs ran at all (a guest that panicked or hung ran none). */
  ran: boolean
  kernelRelease?: string
  /** In guests: KVM or QEMU's emulation (TCG). */
  accel?: 'kvm' | 'tcg'
  passed: number
  failed: number
  /** Scenarios the kernel cannot run (skipped with "unsupported: <reason>"). */
  unsupported: number
  /** Why the run as a whole failed (guest panic, hang, interrupt), beyond failed specs. */
  failure?: string
  reportDir: string
  summary: string
}

/** The CLI's messages, and the live line of long steps (kernel download, image, snapshot) on a terminal. */
const status = new StatusLine(process.stderr)
export const log = status.log
export const progress = status.progress
export const endProgress = () => status.end()

export function reportDirOf(args: RunArgs): string {
  return resolve(args.report ?? userReports('latest'))
}

/** On GitHub Actions, vitest's own reporter annotates the failing spec (it adds itself only when no reporter is named). */
const GITHUB_REPORTER = process.env.GITHUB_ACTIONS === 'true' ? ['github-actions'] : []

/**
 * Runs vitest as a child with the given project; returns the JSON reporter's counts. `wrap` puts the
 * command inside another (the delegated scope of a native run on a systemd host). The experiments' vitest
 * runs in a process group of its own and an interrupt goes to the whole group, so its workers get it too
 * and tear down their trees (src/os/kill.ts) or guests (vm/vm.ts) before the CLI exits; what is left
 * after 10 s is killed.
 */
/** How long an interrupted vitest's workers have to tear down before they are killed. */
const STOP_GRACE_MS = 10_000

export async function runVitest(
  project: 'unit' | 'experiments' | 'experiments@*',
  filters: string[],
  env: Record<string, string>,
  signal: AbortSignal,
  wrap: (command: string[]) => string[] = (c) => c,
  timeoutMs?: number,
): Promise<{ passed: number; failed: number; skipped: number; exitCode: number; reported: boolean; timedOut: boolean }> {
  // The experiments' results as vitest's JSON reporter says them, beside the report; the unit tests' only
  // counted, in a temp file (none otherwise: a CLI killed outright leaves nothing in /tmp).
  const inReport = project !== 'unit' && env.OOMLAB_REPORT_DIR ? join(env.OOMLAB_REPORT_DIR, 'vitest.json') : undefined
  await using temp = inReport === undefined ? await tempJson(`oomlab-vitest-${project.replace(/\W/g, '-')}-`) : undefined
  const json = { path: inReport ?? temp!.path }
  // The last run's results must never read as this one's (a vitest that did not start writes none).
  await rm(json.path, { force: true })
  const reporters = ['default', 'json', ownModule('src/report/reporter'), ownModule('src/report/junit'), ...GITHUB_REPORTER].map((r) => `--reporter=${r}`)
  const ownGroup = project !== 'unit'
  const [file, ...args] = wrap([process.execPath, vitestBin(), 'run', '--config', ownModule('vitest.config'), '--project', project, ...reporters, `--outputFile.json=${json.path}`, ...filters])
  const child = execa(file!, args, {
    cwd: projectRoot,
    stdio: 'inherit',
    reject: false,
    env,
    ...(ownGroup ? { detached: true } : { cancelSignal: signal, forceKillAfterDelay: 5000 }),
    ...(timeoutMs !== undefined && { timeout: timeoutMs }),
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
  if (ownGroup) signal.addEventListener('abort', onAbort, { once: true })
  const r = await child
  if (ownGroup) {
    signal.removeEventListener('abort', onAbort)
    clearTimeout(force)
    // vitest exits 1 ms after a signal, its forks still tearing down their trees: they get the rest of the
    // grace; then they are killed, and are dead (not just signalled) before the caller reaps their trees.
    if (signal.aborted && child.pid !== undefined) {
      const left = await groupEnded(child.pid, Math.max(0, forceAt - performance.now()))
      if (left.length > 0) {
        toGroup('SIGKILL')
        await groupEnded(child.pid, 2000)
      }
    }
  }
  try {
    const j = JSON.parse(await readFile(json.path, 'utf8')) as { numPassedTests: number; numFailedTests: number; numPendingTests: number }
    return { passed: j.numPassedTests, failed: j.numFailedTests, skipped: j.numPendingTests, exitCode: r.exitCode ?? 1, reported: true, timedOut: r.timedOut }
  } catch {
    return { passed: 0, failed: 0, skipped: 0, exitCode: r.exitCode ?? 1, reported: false, timedOut: r.timedOut }
  }
}

/** The prepared guests, for vitest's global setup, in a temp file that goes with the run. */
export async function preparedFile(guests: Record<string, PreparedGuest>): Promise<{ path: string } & AsyncDisposable> {
  const f = await tempJson('oomlab-prepared-')
  await writeFile(f.path, JSON.stringify(guests))
  return f
}

/**
 * The run's first guests, restored ahead while vitest starts (as many as it has workers, no more than `specs`);
 * each experiment claims one (src/vm/ahead.ts). None with OOMLAB_RESTORE_AHEAD=0 (to compare, or to rule them out).
 */
export async function restoreGuestsAhead(guest: PreparedGuest, specs: number, o: { log: (line: string) => void; signal: AbortSignal }): Promise<GuestsAhead | undefined> {
  const count = process.env.OOMLAB_RESTORE_AHEAD === '0' ? 0 : Math.min(experimentJobs(), specs)
  return count > 0 ? GuestsAhead.start(guest.spec, guest.snapshot, count, { timeoutMs: LAB_DEFAULTS.restoreTimeoutMs, ...o }) : undefined
}

/** How many spec files the run will have: its own, or the article's that vitest's filters (substrings of the path) select. */
async function specCount(filters: string[], specs: string[]): Promise<number> {
  if (specs.length > 0) return specs.length
  const files = (await readdir(join(projectRoot, 'experiments')).catch(() => [] as string[])).filter((f) => SPEC_FILE.test(f))
  return filters.length === 0 ? files.length : files.filter((f) => filters.some((x) => `experiments/${f}`.includes(x))).length
}

/** Spec files of one's own replace the article's in the experiments project (vitest.config.ts). */
export const SPECS_ENV = 'OOMLAB_SPECS'
const specsEnv = (specs: string[]) => (specs.length > 0 ? { [SPECS_ENV]: JSON.stringify(specs) } : {})

/** A temp JSON file that goes when disposed of (and at exit). */
async function tempJson(prefix: string): Promise<{ path: string } & AsyncDisposable> {
  const f = await tmpFile({ prefix, postfix: '.json' })
  return { path: f.path, [Symbol.asyncDispose]: () => f.cleanup() }
}

/** Native or VM? Native only when every preflight check passes and no VM was asked for. */
async function canRunNatively(args: RunArgs): Promise<boolean> {
  if (args.vm) return false
  const failing = (await preflight(undefined, args.cgroupRoot)).filter((c) => !c.ok)
  if (failing.length === 0) return true
  if (args.native) throw new UserError(`cannot run natively: ${formatCheck(failing[0]!).replace(/^FAIL\s+/, '')}`)
  log(`running in a VM, as this host cannot: ${failing[0]!.detail}`)
  return false
}

export async function runExperiments(args: RunArgs, signal: AbortSignal): Promise<ExperimentsOutcome> {
  const reportDir = reportDirOf(args)
  const evidenceDir = join(reportDir, 'evidence')
  // Where it can run is decided first: a user who cannot run it is told why, not that the report is not theirs.
  const native = await canRunNatively(args)
  // The report is the reporter's (src/report/reporter.ts): it clears the last run's and writes this one's.
  const reporting = { OOMLAB_REPORT_DIR: reportDir, OOMLAB_EVIDENCE_DIR: evidenceDir, ...specsEnv(args.specs) }

  let outcome: Omit<ExperimentsOutcome, 'summary' | 'reportDir'>
  if (native) {
    const release = (await readFile('/proc/sys/kernel/osrelease', 'utf8')).trim()
    // On a systemd host the run gets a scope of its own, unless the user named a cgroup.
    const unit = args.cgroupRoot === undefined && isSystemdHost() ? scopeUnit(selfOwner()) : undefined
    log(`running the experiments natively on kernel ${release}${unit ? `, in a delegated scope (systemd-run --scope -p Delegate=yes --unit=${unit})` : ` under ${args.cgroupRoot ?? 'the cgroup2 mount'}`}`)
    const env = { ...process.env, OOMLAB_MACHINE: 'local', ...reporting, ...(args.cgroupRoot !== undefined && { OOMLAB_CGROUP_PARENT: args.cgroupRoot }) }
    const wrap = unit ? (command: string[]) => inScopeCommand(unit, [process.execPath, oomlabBin, '__in-scope', '--', ...command]) : undefined
    const r = await runVitest('experiments', args.filters, env as Record<string, string>, signal, wrap)
    // Interrupted: whatever tree a killed worker could not remove goes now, not at the next run.
    if (signal.aborted && !unit) reapStaleTrees(args.cgroupRoot ?? cgMountPoint() ?? '/sys/fs/cgroup', log)
    if (unit && !r.reported && !signal.aborted)
      throw new UserError(`the experiments did not start in the delegated scope ${unit} (systemd-run's or oomlab's message is above); name a delegated cgroup of your own with --cgroup-root instead`, 1)
    outcome = {
      where: 'native',
      ran: r.passed + r.failed > 0,
      kernelRelease: release,
      passed: r.passed,
      failed: r.failed,
      unsupported: r.skipped,
      ...(signal.aborted ? { failure: 'interrupted' } : r.exitCode !== 0 && r.failed === 0 ? { failure: `vitest exited with ${r.exitCode}` } : {}),
    }
  } else {
    // vitest runs here; each experiment gets a guest restored from a snapshot of a booted one.
    const t0 = performance.now()
    const guest = await prepareLabGuest(
      {
        ...(args.kernel !== undefined && { kernel: args.kernel }),
        ...(args.kernelImage !== undefined && { kernelImage: args.kernelImage }),
        accel: args.accel,
        ...(args.memoryMiB !== undefined && { memoryMiB: args.memoryMiB }),
        ...(args.cpus !== undefined && { cpus: args.cpus }),
        append: args.append,
        refresh: args.refresh,
        ...(args.bootTimeoutMs !== undefined && { bootTimeoutMs: args.bootTimeoutMs }),
      },
      { log, progress, signal },
    )
    status.end()
    const t1 = performance.now()
    await using ahead = await restoreGuestsAhead(guest, await specCount(args.filters, args.specs), { log, signal })
    await using prepared = await preparedFile({ default: { ...guest, ...(ahead && { ahead: ahead.socketPath }) } })
    const env = { ...process.env, ...reporting, [PREPARED_ENV]: prepared.path } as Record<string, string>
    const r = await runVitest('experiments', args.filters, env, signal, undefined, args.runTimeoutMs)
    log(`timings: kernel ${(guest.timings.kernelMs / 1000).toFixed(1)} s, image ${(guest.timings.imageMs / 1000).toFixed(1)} s, snapshot ${(guest.timings.snapshotMs / 1000).toFixed(1)} s (${guest.snapshot.made ? 'made' : 'reused'}), experiments ${((performance.now() - t1) / 1000).toFixed(1)} s, total ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    outcome = {
      where: 'vm',
      accel: guest.spec.accel,
      ran: r.passed + r.failed > 0,
      kernelRelease: guest.kernel.release,
      passed: r.passed,
      failed: r.failed,
      unsupported: r.skipped,
      ...(signal.aborted
        ? { failure: 'interrupted' }
        : r.timedOut
          ? { failure: `the experiments did not finish within ${(args.runTimeoutMs ?? 0) / 1000} s (--timeout)` }
          : r.exitCode !== 0 && r.failed === 0
            ? { failure: `vitest exited with ${r.exitCode}${r.reported ? '' : ' before reporting (its message is above)'}` }
            : r.passed + r.failed + r.skipped === 0
              ? { failure: 'no experiment ran (check the spec filter)' }
              : {}),
    }
  }
  const evidence = await readEvidenceDir(evidenceDir)
  // Unsupported is what the evidence says the kernel could not run; any other test vitest did not run
  // (its worker died) is a failure, not a skip.
  const unsupported = evidence.filter((e) => e.verdict.state === 'unsupported').length
  if (outcome.unsupported > unsupported) {
    outcome.failed += outcome.unsupported - unsupported
    outcome.failure ??= `${outcome.unsupported - unsupported} experiment(s) did not run`
  }
  outcome.unsupported = unsupported
  // A run that failed as a whole (vitest died, interrupted) says so in the report too.
  if (outcome.failure !== undefined)
    await writeReport(reportDir, [
      {
        name: args.kernelImage ?? args.kernel ?? (outcome.where === 'vm' ? DEFAULT_KERNEL : 'host'),
        ...(outcome.kernelRelease !== undefined && { release: outcome.kernelRelease }),
        where: outcome.where,
        failure: outcome.failure,
        evidence,
      },
    ])
  return { ...outcome, reportDir, summary: formatSummary(evidence) }
}
