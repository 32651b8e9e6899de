/**
 * oomlab bench: the harness's speed against its targets, each measured as a user meets it.
 *   - `npm start` and all eight specs as whole commands, against the article's three experiments typed
 *     as a plain shell script (experiments/article.sh) in a freshly booted minimal guest (no node);
 *   - a guest restored from its snapshot, alone and during a run; making a snapshot;
 *   - each scenario, from the lab ready to the verdict (its spec run alone), against the same shell
 *     script run by the agent in a guest restored from the same snapshot, also alone; round trips per spec;
 *   - kill detection: the kernel's "populated 0" (cgroup_notify_populated tracepoint) to the spec
 *     knowing it, host and guest clocks related through a round trip and a kernel-log marker;
 *   - the four-kernel matrix;
 *   - beside each wall-time target, its shell floor: as many of article.sh's scenarios, each in a guest
 *     restored for it, as many at once as a run's workers, no vitest and no Lab.
 * A missed target exits 1.
 */
import { cp, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { availableParallelism } from 'node:os'
import { execa } from 'execa'
import { dir as tmpDir } from 'tmp-promise'
import { prepareLabGuest, remakeSnapshotIn } from '../vm/prepare.js'
import { openGuestOs, type GuestOs, type PreparedGuest } from '../vm/restore.js'
import { buildInitramfs } from '../vm/image/store.js'
import { shellGuestTree, SHELL_GUEST_EXIT } from '../vm/image/recipes.js'
import { GuestVm } from '../vm/vm.js'
import { parseKernelSpec } from '../kernel/resolve.js'
import { readEvidenceDir, type Evidence } from '../report/evidence.js'
import { Lab, ROOT } from '../experiment/lab.js'
import { GUEST_BASELINE, GUEST_CGROUP_ROOT } from '../vm/in-guest/layout.js'
import { oomlabBin, projectRoot, userReports, cacheDir } from '../util/paths.js'
import { errorMessage } from '../util/errors.js'
import { log } from './experiments.js'
import { positiveInt } from './args.js'
import { oneOf, stringFlag, type Parsed } from './flags.js'
import { MATRIX_DEFAULT } from './args.js'
import { articleSpecs } from '../run/resolve.js'
import { labSpecs } from '../run/images.js'
import { specIdOf } from '../report/paths.js'

export const TARGETS = {
  /** `npm start`, the whole command. */
  startMs: 6_000,
  /** `npm start` against the shell script in a freshly booted minimal guest. */
  startVsShell: 0.7,
  eightSpecsMs: 12_000,
  matrixMs: 30_000,
  restoreMs: 600,
  makeSnapshotMs: 12_000,
  /** A scenario through the harness against the shell script in a restored guest. */
  scenarioRatio: 1.3,
  killHarnessMs: 30,
  /** `npm start`'s start-up: from the command's start to its first experiment asking for its guest. */
  startupMs: 1_500,
}

export const median = (xs: readonly number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const sec = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? '-' : `${(ms / 1000).toFixed(2)} s`)
const msf = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(0)} ms`)
/** A harness latency against the clocks' stated error: a value below zero says the relation of the clocks is off. */
const againstClocks = (ms: number, errMs: number) =>
  !Number.isFinite(ms) || !Number.isFinite(errMs) ? '' : ms < -errMs ? ` (below zero by more than the clocks' +-${errMs.toFixed(1)} ms: their relation is off)` : Math.abs(ms) <= errMs ? ` (within the clocks' +-${errMs.toFixed(1)} ms)` : ''
/** A scenario's kill-detection column; scenario 1 kills no group, so nothing empties. */
const killColumn = (p: { killMs: number; killKernelMs: number; killHarnessMs: number; clockUncertaintyMs: number }) =>
  Number.isFinite(p.killMs) ? `${msf(p.killMs)} (${msf(p.killKernelMs)} + ${msf(p.killHarnessMs)}), clocks +-${p.clockUncertaintyMs.toFixed(1)} ms` : 'none: no group kill, no cgroup empties'
const met = (ok: boolean) => (ok ? 'met' : 'MISSED')
const range = (xs: readonly number[], f = sec) => (xs.length ? `${f(Math.min(...xs))}-${f(Math.max(...xs))}` : '-')
const ARTICLE = ['01-', '02-', '03-']
/** The eight specs of the lab's image, by their ids (the runtimes' specs run in an image of their own, not timed here). */
const eight = labSpecs(articleSpecs()).map(specIdOf)
const scenarioOf = (file: string) => Number(file.match(/^0?(\d+)-/)?.[1] ?? NaN)

/** One whole `oomlab` command, timed from outside; its evidence read back. */
async function timeCommand(args: string[], env: Record<string, string>, signal: AbortSignal, o: { npmScript?: string } = {}): Promise<{ ms: number; startupMs: number; exitCode: number; evidence: Evidence[]; output: string }> {
  const report = await tmpDir({ prefix: 'oomlab-bench-report-', unsafeCleanup: true })
  try {
    // `npm start` as the user types it, npm's own start-up included; its script's arguments come first.
    const [file, argv] = o.npmScript ? ['npm', ['run', '--silent', o.npmScript, '--', ...args, '--report', report.path]] : [process.execPath, [oomlabBin, ...args, '--report', report.path]]
    const t0 = performance.now()
    const wall0 = Date.now()
    const r = await execa(file, argv, { reject: false, all: true, env: { ...process.env, ...env }, cancelSignal: signal, cwd: projectRoot })
    const ms = performance.now() - t0
    const evidence = await readEvidenceDir(join(report.path, 'evidence'))
    // A failed run's report is kept: a failure here is a finding.
    if (r.exitCode !== 0) {
      const keep = join(userReports('bench-failures'), `${new Date().toISOString().replace(/[:.]/g, '-')}-${args[0]}`)
      await cp(report.path, keep, { recursive: true })
      await writeFile(join(keep, 'output.txt'), String(r.all ?? ''))
      log(`kept the failed run's report in ${keep}`)
    }
    // The start-up ends when the first experiment asks for its machine (evidence `askedAt`, the host's clock).
    const asked = evidence.map((e) => Date.parse(e.askedAt ?? '')).filter(Number.isFinite)
    return { ms, startupMs: asked.length ? Math.min(...asked) - wall0 : NaN, exitCode: r.exitCode ?? 1, evidence, output: String(r.all ?? '') }
  } finally {
    await report.cleanup()
  }
}

/** How long the shell guest gets from QEMU's start to its power-off (the three scenarios take ~10 s under TCG). */
const SHELL_GUEST_TIMEOUT_MS = 180_000

/**
 * The shell script in a freshly booted guest of busybox, stress-ng, setpriv and nohup (no node, no
 * snapshot), on the lab guest's kernel and machine: the whole QEMU run, from its start to its exit.
 */
export async function shellGuestRun(g: PreparedGuest, signal: AbortSignal): Promise<{ ms: number; failure?: string }> {
  const image = await buildInitramfs(cacheDir(), await shellGuestTree(), 'shell')
  const t0 = performance.now()
  const vm = await GuestVm.boot({ ...g.spec, initrd: image.path, append: [], channel: 'serial' }, { connectTimeoutMs: SHELL_GUEST_TIMEOUT_MS, signal })
  let timer: NodeJS.Timeout | undefined
  try {
    const inTime = await Promise.race([vm.exited.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), SHELL_GUEST_TIMEOUT_MS)))])
    const ms = performance.now() - t0
    if (!inTime) return { ms, failure: `the shell guest did not power off within ${SHELL_GUEST_TIMEOUT_MS / 1000} s` }
    const exit = SHELL_GUEST_EXIT.exec(vm.consoleTail().join('\n'))?.[1]
    if (exit === undefined) return { ms, failure: `the shell guest stopped without saying how the script ended: ${vm.failure() ?? 'no reason on its console'}` }
    return { ms, ...(exit !== '0' && { failure: `scenario ${exit} of the shell script failed` }) }
  } finally {
    clearTimeout(timer)
    await vm.dispose()
  }
}

/** Runs article.sh's scenario N on the guest, started in `cgroup` as root in `cwd`; host ms from start to its exit. */
async function runArticleSh(os: GuestOs, n: number, cgroup: string, cwd: string): Promise<number> {
  const t0 = performance.now()
  const s = await os.spawn({ argv: ['/bin/sh', '-c', `/bin/sh ${GUEST_BASELINE} ${n}; echo "exit=$?"`], cgroup, user: ROOT, cwd, stdin: 'ignore', timeoutMs: 20_000 })
  const [, code] = await os.waitOutput(s.id, String.raw`exit=(\d+)`, 0, 'the shell script to end', 120_000)
  const ms = performance.now() - t0
  if (code !== '0') throw new Error(`article.sh ${n} failed in the restored guest (exit ${code}): ${(await os.output(s.id)).slice(-300)}`)
  return ms
}

/** The shell script's scenario N, run by the agent in a guest restored from the snapshot: host ms from start to its exit. */
async function shellInRestored(g: PreparedGuest, n: number, signal: AbortSignal): Promise<number> {
  await using os = await openGuestOs(g, { signal })
  const lab = await Lab.open(`bench: article.sh ${n}`, { os })
  try {
    // A leaf of our tree for the script's shell: the script makes its own tree at the root, as root.
    return await runArticleSh(os, n, (await lab.cgroup('script')).dir, lab.tree.cwd)
  } finally {
    await lab.dispose()
  }
}

/** One cell of a shell floor: a guest restored, article.sh's scenario N run from its root cgroup (no Lab), the guest gone. */
async function shellCell(g: PreparedGuest, n: number, signal: AbortSignal): Promise<void> {
  await using os = await openGuestOs(g, { signal })
  await runArticleSh(os, n, GUEST_CGROUP_ROOT, '/tmp')
}

/**
 * The floor under a wall-time target: the same number of experiments, each the shell script's scenario
 * (1, 2, 3 in turn) run by the agent in a guest restored for it, as many at once as a run has workers,
 * no vitest and no Lab. What any harness that restores a guest per experiment and runs the article's
 * steps pays on this machine.
 */
export async function shellCells(guests: readonly PreparedGuest[], perGuest: number, jobs: number, signal: AbortSignal): Promise<number> {
  const cells = guests.flatMap((g) => Array.from({ length: perGuest }, (_, i) => ({ g, n: (i % 3) + 1 })))
  const t0 = performance.now()
  let next = 0
  let failing = false
  const worker = async () => {
    while (next < cells.length && !signal.aborted && !failing) {
      const { g, n } = cells[next++]!
      await shellCell(g, n, signal).catch((err: unknown) => {
        failing = true
        throw err
      })
    }
  }
  // Every cell's guest gone before this returns, even when one failed.
  const settled = await Promise.allSettled(Array.from({ length: Math.min(jobs, cells.length) }, worker))
  const failed = settled.find((r) => r.status === 'rejected')
  if (failed) throw failed.reason
  return performance.now() - t0
}

export async function bench(p: Parsed, signal: AbortSignal): Promise<number> {
  const v = { kernel: stringFlag(p, 'kernel'), 'skip-matrix': p.values['skip-matrix'] === true }
  const runs = positiveInt('runs', stringFlag(p, 'runs'), 1, 50) ?? 3
  const accel = oneOf('--accel', stringFlag(p, 'accel'), ['auto', 'kvm', 'tcg'] as const, 'auto')
  if (v.kernel !== undefined) parseKernelSpec(v.kernel)
  const kernelArgs = v.kernel !== undefined ? ['--kernel', v.kernel] : []

  const g = await prepareLabGuest({ ...(v.kernel !== undefined && { kernel: v.kernel }), accel }, { log, signal })
  const failures: string[] = []
  const step = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
    if (signal.aborted) return undefined
    try {
      return await f()
    } catch (err) {
      if (signal.aborted) return undefined
      failures.push(`${what}: ${errorMessage(err)}`)
      log(`${what} FAILED: ${errorMessage(err)}`)
      return undefined
    }
  }

  // Making a snapshot, the kernel and image cached: into a folder of its own, so the cache's stays.
  const make = await step('making a snapshot', async () => {
    const dir = await tmpDir({ prefix: 'oomlab-bench-snapshot-', unsafeCleanup: true })
    try {
      return await remakeSnapshotIn(g, dir.path)
    } finally {
      await dir.cleanup()
    }
  })
  log(`making a snapshot: ${sec(make)}`)

  const restores: number[] = []
  for (let i = 0; i < Math.max(5, runs); i++)
    await step('restore', async () => {
      const os = await openGuestOs(g, { signal })
      try {
        await os.ping()
        restores.push(os.restoreMs)
      } finally {
        await os.dispose()
      }
    })
  log(`restore to agent answering, alone: ${restores.map((x) => sec(x)).join(', ')}`)

  // Each scenario by the shell script, then by its spec alone (one guest at a time, the host otherwise idle),
  // side by side: the ratio is taken pair by pair, as this machine's speed drifts by tens of percent an hour.
  const traced = { OOMLAB_TRACE_POPULATED: '1' }
  const shellRestored = new Map<number, number[]>()
  const solos: { ms: number; evidence: Evidence[] }[] = []
  const pairs = new Map<number, { shellMs: number; harnessMs: number }[]>()
  for (let i = 0; i < runs; i++)
    for (const [k, n] of [1, 2, 3].entries()) {
      const ms = await step(`article.sh ${n} in a restored guest`, () => shellInRestored(g, n, signal))
      if (ms !== undefined) shellRestored.set(n, [...(shellRestored.get(n) ?? []), ms])
      const spec = ARTICLE[k]!
      const r = await step(`spec ${spec} alone`, () => timeCommand(['reproduce', ...kernelArgs, spec], traced, signal))
      if (r && r.exitCode !== 0) failures.push(`oomlab reproduce ${spec} exited ${r.exitCode}`)
      else if (r) solos.push(r)
      const harnessMs = r?.evidence.find((e) => scenarioOf(e.file ?? '') === n)?.durationMs
      if (ms !== undefined && harnessMs !== undefined) pairs.set(n, [...(pairs.get(n) ?? []), { shellMs: ms, harnessMs }])
    }
  log(`article.sh in a restored guest, per scenario: ${[1, 2, 3].map((n) => `${n}: ${range(shellRestored.get(n) ?? [])}`).join('; ')}`)
  log(`each article spec alone (whole command): ${range(solos.map((r) => r.ms))}`)

  const shellBoot: number[] = []
  for (let i = 0; i < runs; i++) {
    const r = await step('the shell script in a freshly booted guest', () => shellGuestRun(g, signal))
    if (r?.failure) failures.push(`the shell script in a freshly booted guest: ${r.failure}`)
    else if (r) shellBoot.push(r.ms)
  }
  log(`article.sh 1-3 in a freshly booted minimal guest, whole QEMU run: ${shellBoot.map((x) => sec(x)).join(', ')}`)

  // `npm start` itself, untraced, as a user runs it (the kill detection comes from the traced runs above).
  const starts: { ms: number; startupMs: number; evidence: Evidence[] }[] = []
  for (let i = 0; i < runs; i++) {
    const r = await step('npm start', () => timeCommand(kernelArgs, {}, signal, { npmScript: 'start' }))
    if (r && r.exitCode !== 0) failures.push(`npm start exited ${r.exitCode}: ${r.output.split('\n').filter((l) => /FAIL|oomlab:/.test(l)).slice(-3).join(' | ')}`)
    else if (r) starts.push(r)
  }
  log(`npm start (whole command): ${starts.map((r) => sec(r.ms)).join(', ')}`)

  const eights: { ms: number; evidence: Evidence[] }[] = []
  for (let i = 0; i < runs; i++) {
    const r = await step('all eight specs', () => timeCommand(['reproduce', ...kernelArgs, ...eight], {}, signal))
    if (r && r.exitCode !== 0) failures.push(`oomlab reproduce (8 specs) exited ${r.exitCode}`)
    else if (r) eights.push(r)
  }
  log(`all eight specs (whole command): ${eights.map((r) => sec(r.ms)).join(', ')}`)

  // The shell floor of each wall target, measured the same way as its run: whole, `jobs` guests at once.
  const jobs = Math.max(1, availableParallelism())
  const floorStarts: number[] = []
  const floorEights: number[] = []
  for (let i = 0; i < runs; i++) {
    const a = await step('the shell floor of npm start', () => shellCells([g], 3, jobs, signal))
    if (a !== undefined) floorStarts.push(a)
    const b = await step('the shell floor of the eight specs', () => shellCells([g], 8, jobs, signal))
    if (b !== undefined) floorEights.push(b)
  }
  const floorStart = median(floorStarts)
  const floorEight = median(floorEights)
  log(`the shell floor (article.sh scenarios in restored guests, ${jobs} at once): 3 of them ${floorStarts.map((x) => sec(x)).join(', ')}; 8 of them ${floorEights.map((x) => sec(x)).join(', ')}`)

  let matrixMs: number | undefined
  let floorMatrix: number | undefined
  if (!v['skip-matrix']) {
    // The target is for cached snapshots: a kernel whose snapshot this checkout has not made yet gets it first, untimed.
    const matrixGuests: PreparedGuest[] = []
    for (const kernel of MATRIX_DEFAULT) {
      const mg = await step(`the ${kernel} snapshot`, () => prepareLabGuest({ kernel, accel }, { log: () => undefined, signal }))
      if (mg) matrixGuests.push(mg)
    }
    const r = await step('the four-kernel matrix', () => timeCommand(['matrix', ...eight.flatMap((s) => ['--spec', s])], {}, signal))
    if (r && r.exitCode !== 0) failures.push(`oomlab matrix exited ${r.exitCode}`)
    else if (r) matrixMs = r.ms
    log(`the four-kernel matrix (whole command): ${sec(matrixMs)}`)
    if (matrixGuests.length === MATRIX_DEFAULT.length) floorMatrix = await step('the shell floor of the matrix', () => shellCells(matrixGuests, 8, jobs, signal))
    log(`the shell floor of the matrix (32 article.sh scenarios, each in a guest restored from its kernel's snapshot, ${jobs} at once): ${sec(floorMatrix)}`)
  }

  // Per scenario: the harness's lab-to-verdict time, from the runs of each spec alone (as the shell script ran).
  const articleEvidence = solos.flatMap((r) => r.evidence)
  const per = [1, 2, 3].map((n) => {
    const es = articleEvidence.filter((e) => scenarioOf(e.file ?? '') === n)
    const harnessMs = median(es.map((e) => e.durationMs))
    const shellMs = median(shellRestored.get(n) ?? [])
    const kd = es.flatMap((e) => (e.killDetection ? [e.killDetection] : []))
    return {
      scenario: n,
      harnessMs,
      shellMs,
      // The median of the pairs' ratios (each spec run right after the shell script's same scenario).
      ratio: median((pairs.get(n) ?? []).map((p) => p.harnessMs / p.shellMs)),
      roundTrips: median(es.map((e) => e.machine?.roundTrips ?? NaN)),
      killMs: median(kd.map((k) => k.latencyMs)),
      killKernelMs: median(kd.map((k) => k.kernelMs ?? NaN)),
      killHarnessMs: median(kd.map((k) => k.harnessMs ?? NaN)),
      clockUncertaintyMs: median(kd.map((k) => k.clockUncertaintyUs / 1000)),
    }
  })
  const eightEvidence = eights.flatMap((r) => r.evidence)
  const roundTrips = new Map<string, number>()
  for (const e of eightEvidence) if (e.file && e.machine?.roundTrips !== undefined) roundTrips.set(e.file, Math.max(roundTrips.get(e.file) ?? 0, e.machine.roundTrips))
  const restoreDuring = eightEvidence.flatMap((e) => (e.machine?.restoreMs !== undefined ? [e.machine.restoreMs] : []))
  const startMs = median(starts.map((r) => r.ms))
  const startupMs = median(starts.map((r) => r.startupMs))
  const shellBootMs = median(shellBoot)
  const worstKill = Math.max(...per.filter((p) => p.scenario !== 1).map((p) => p.killHarnessMs))
  // Its own clocks' error, not another scenario's.
  const worstClocksMs = per.find((p) => p.killHarnessMs === worstKill)?.clockUncertaintyMs ?? NaN
  const results = {
    start: { ms: startMs, ok: startMs <= TARGETS.startMs },
    startup: { ms: startupMs, ok: startupMs <= TARGETS.startupMs },
    startVsShell: { ratio: startMs / shellBootMs, ok: startMs / shellBootMs <= TARGETS.startVsShell },
    eightSpecs: { ms: median(eights.map((r) => r.ms)), ok: median(eights.map((r) => r.ms)) <= TARGETS.eightSpecsMs },
    ...(!v['skip-matrix'] && { matrix: { ms: matrixMs ?? NaN, ok: (matrixMs ?? Infinity) <= TARGETS.matrixMs } }),
    restore: { ms: median(restores), ok: median(restores) <= TARGETS.restoreMs },
    makeSnapshot: { ms: make ?? NaN, ok: (make ?? Infinity) <= TARGETS.makeSnapshotMs },
    scenarioRatio: { ratio: Math.max(...per.map((p) => p.ratio)), ok: per.every((p) => p.ratio <= TARGETS.scenarioRatio) },
    killHarness: { ms: worstKill, ok: Number.isFinite(worstKill) && worstKill <= TARGETS.killHarnessMs },
  }
  const ok = failures.length === 0 && Object.values(results).every((r) => r.ok)
  const floors = { jobs, start: floorStarts, eightSpecs: floorEights, matrix: floorMatrix }
  const summary = { date: new Date().toISOString(), kernel: g.kernel.release, accel: g.spec.accel, channel: g.spec.channel ?? 'serial', runs, targets: TARGETS, results, floors, per, roundTrips: Object.fromEntries(roundTrips), restores, restoreDuring, shellBoot, shellRestored: Object.fromEntries(shellRestored), starts: starts.map((r) => r.ms), startups: starts.map((r) => r.startupMs), solos: solos.map((r) => r.ms), eights: eights.map((r) => r.ms), matrixMs, make, failures }
  const out = userReports('bench.json')
  await mkdir(userReports(''), { recursive: true })
  await writeFile(out, `${JSON.stringify(summary, null, 2)}\n`)

  const lines = [
    '',
    `oomlab bench: kernel ${g.kernel.release} (${g.spec.accel}, agent over ${g.spec.channel === 'virtio' ? 'virtio-serial' : 'the UART'}), ${runs} run(s) each; medians`,
    '',
    ` npm start (3 article specs)    ${sec(results.start.ms).padEnd(10)} target <= ${sec(TARGETS.startMs)}: ${met(results.start.ok)}  (runs ${range(starts.map((r) => r.ms))}; shell floor*** ${sec(floorStart)})`,
    `   its start-up                 ${sec(results.startup.ms).padEnd(10)} target <= ${sec(TARGETS.startupMs)}: ${met(results.startup.ok)}  (npm start to its first experiment asking for its guest: npm, the CLI, vitest and its worker; runs ${range(starts.map((r) => r.startupMs))}; the shell floor has none)`,
    ` vs the shell script booted     ${`${results.startVsShell.ratio.toFixed(2)}x`.padEnd(10)} target <= ${TARGETS.startVsShell}x: ${met(results.startVsShell.ok)}  (article.sh 1-3 in a fresh minimal guest, whole QEMU run: ${sec(shellBootMs)})`,
    ` all eight specs                ${sec(results.eightSpecs.ms).padEnd(10)} target <= ${sec(TARGETS.eightSpecsMs)}: ${met(results.eightSpecs.ok)}  (runs ${range(eights.map((r) => r.ms))}; shell floor*** ${sec(floorEight)})`,
    ...(results.matrix ? [` four kernels x eight specs     ${sec(results.matrix.ms).padEnd(10)} target <= ${sec(TARGETS.matrixMs)}: ${met(results.matrix.ok)}  (shell floor*** ${sec(floorMatrix)})`] : [' four kernels x eight specs     skipped (--skip-matrix)']),
    ` *** the same number of experiments as article.sh's scenarios (1, 2, 3 in turn), each run by the agent from the root cgroup of a guest restored for it, ${jobs} at once (a run's workers), no vitest, no Lab, whole: what the article's own steps cost in restored guests here; a target below it is out of reach of any harness of this design on this machine`,
    ` restore to agent answering     ${sec(results.restore.ms).padEnd(10)} target <= ${sec(TARGETS.restoreMs)}: ${met(results.restore.ok)}  (alone ${range(restores)}; during the eight-spec runs ${range(restoreDuring)}, median ${sec(median(restoreDuring))})`,
    ` making a snapshot              ${sec(results.makeSnapshot.ms).padEnd(10)} target <= ${sec(TARGETS.makeSnapshotMs)}: ${met(results.makeSnapshot.ok)}  (kernel and image cached)`,
    '',
    ' scenario (lab ready to verdict)        harness*  shell script** ratio   round trips  kill detection: all (kernel + harness)',
    ...per.map((p) => ` ${['', '1 memory.oom.group=0 on a leaf', '2 memory.oom.group=1 on a leaf', '3 memory.oom.group=1 on a parent'][p.scenario]!.padEnd(39)}${sec(p.harnessMs).padEnd(10)}${sec(p.shellMs).padEnd(15)}${`${p.ratio.toFixed(2)}x`.padEnd(8)}${String(p.roundTrips).padEnd(13)}${killColumn(p)}`),
    ` * the spec alone (oomlab reproduce 0N-), one restored guest, from its evidence; ** article.sh run by the agent in a guest restored from the same snapshot (host time, spawn to exit), run right before the spec; ratio: the median of the pairs' ratios`,
    ` worst scenario ratio           ${`${results.scenarioRatio.ratio.toFixed(2)}x`.padEnd(10)} target <= ${TARGETS.scenarioRatio}x: ${met(results.scenarioRatio.ok)}`,
    ` kill detection, harness part   ${msf(results.killHarness.ms).padEnd(10)} target <= ${TARGETS.killHarnessMs} ms: ${met(results.killHarness.ok)}${againstClocks(worstKill, worstClocksMs)}  (tracepoint's "populated 0" to the spec knowing; host and guest clocks related by a round trip's midpoint, the guest's kernel log by a marker record)`,
    ` round trips per spec           ${[...roundTrips].map(([f, n]) => `${f.replace(/-.*/, '')} ${n}`).join(', ')}`,
    ...(failures.length ? ['', 'failures:', ...failures.map((f) => `  ${f}`)] : []),
    '',
    `written to ${out}`,
  ]
  console.log(lines.join('\n'))
  return ok ? 0 : 1
}

