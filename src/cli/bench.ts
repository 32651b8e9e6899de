/**
 * oomlab bench: how fast the harness is, against its targets and against the simplest alternative.
 * Each run boots one VM that first times the article's three experiments as a plain shell script
 * (experiments/article.sh), then runs the same three through the harness, one spec at a time. From
 * the guest come the phases of its run (where the time goes) and each scenario's kill-detection
 * latency. Then the initramfs build (cold, cached) and the four-kernel matrix.
 */
import { parseArgs } from 'node:util'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { dir as tmpDir } from 'tmp-promise'
import { runInVm, vmRunFailure, type VmResult } from '../vm/runner.js'
import { guestTree, buildInitramfs } from '../vm/initramfs.js'
import { parseKernelSpec } from '../vm/kernels.js'
import { projectRoot, cacheDir } from '../util/paths.js'
import { UserError } from '../util/errors.js'
import { log } from './experiments.js'
import { matrix } from './matrix.js'
import type { KillDetection } from '../experiment/lab.js'

export const TARGETS = {
  /** Harness time for the three scenarios against the shell script's. */
  ratio: 2,
  killDetectionMs: 100,
  bootToVerdictMs: 20_000,
  matrixMs: 60_000,
}
const ARTICLE_SPECS = ['01-', '02-', '03-']

export const median = (xs: readonly number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const sec = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? '-' : `${(ms / 1000).toFixed(1)} s`)
const ms = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(0)} ms`)
const met = (ok: boolean) => (ok ? 'met' : 'MISSED')

interface Run {
  run: number
  kernel: string
  accel: string
  bootMs?: number
  bootToVerdictMs: number
  /** Guest uptime (ms) at each step: /init, agent, vitest imported, test run started, done. */
  phases: Record<string, number>
  /** Per scenario (1..3): the shell script's time and the harness's (vitest's test duration). */
  scenarios: { scenario: number; shellMs: number; harnessMs: number; killDetection?: KillDetection }[]
  failure?: string
}

function scenarioOf(file: string): number {
  return Number(file.match(/^0?(\d+)-/)?.[1] ?? NaN)
}

function collect(i: number, vm: VmResult): Run {
  const r = vm.result
  const latency = new Map<number, KillDetection>()
  for (const [name, content] of vm.files) {
    const kd = (JSON.parse(content) as { killDetection?: KillDetection | null }).killDetection
    if (kd) latency.set(scenarioOf(name.replace(/^evidence\//, '')), kd)
  }
  const bad = r?.baseline?.find((b) => b.exitCode !== 0)
  const failure = vmRunFailure(vm) ?? (r && r.failed > 0 ? `${r.failed} spec(s) failed` : undefined) ?? (bad && `the shell script's scenario ${bad.scenario} failed (exit ${bad.exitCode}): ${bad.stderr.trim()}`)
  return {
    run: i,
    kernel: vm.hello?.release ?? vm.kernel.release,
    accel: vm.accel.accel,
    ...(vm.timings.bootMs !== undefined && { bootMs: vm.timings.bootMs }),
    bootToVerdictMs: vm.run.totalMs,
    phases: r?.phases ?? {},
    scenarios: (r?.baseline ?? []).map((b) => {
      const t = r?.tests?.find((x) => scenarioOf(x.file) === b.scenario)
      const kd = latency.get(b.scenario)
      return { scenario: b.scenario, shellMs: b.ms, harnessMs: t?.ms ?? NaN, ...(kd !== undefined && { killDetection: kd }) }
    }),
    ...(failure && { failure }),
  }
}

export async function bench(argv: string[], signal: AbortSignal): Promise<number> {
  let v
  try {
    v = parseArgs({ args: argv, options: { runs: { type: 'string' }, kernel: { type: 'string' }, accel: { type: 'string' }, 'skip-matrix': { type: 'boolean' } }, strict: true }).values
  } catch (err) {
    throw new UserError(`${(err as Error).message.split('\n')[0]} (oomlab bench [--runs N] [--kernel NAME] [--accel auto|kvm|tcg] [--skip-matrix])`)
  }
  if (v.runs !== undefined && !/^\d+$/.test(v.runs)) throw new UserError(`--runs ${JSON.stringify(v.runs)}: expected a whole number from 1 to 50`)
  const runs = Number(v.runs ?? 3)
  if (runs < 1 || runs > 50) throw new UserError(`--runs ${JSON.stringify(v.runs)}: expected a whole number from 1 to 50`)
  const accel = (v.accel ?? 'auto') as 'auto' | 'kvm' | 'tcg'
  if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new UserError(`--accel ${JSON.stringify(v.accel)}: expected auto, kvm or tcg`)
  if (v.kernel !== undefined) parseKernelSpec(v.kernel)

  // The initramfs: cold into an empty cache of its own, then twice into the user's cache (the second is the cached case).
  const cold = await tmpDir({ prefix: 'oomlab-bench-', unsafeCleanup: true })
  let coldMs: number
  try {
    coldMs = (await buildInitramfs(cold.path, await guestTree())).ms
  } finally {
    await cold.cleanup()
  }
  await buildInitramfs(cacheDir(), await guestTree())
  const t0 = performance.now()
  const cached = await buildInitramfs(cacheDir(), await guestTree())
  const cachedMs = performance.now() - t0
  log(`initramfs: cold build ${sec(coldMs)}, cached ${sec(cachedMs)} (bundling the specs, hashing the inputs, checking the image's sha256: ${cached.reused ? 'reused' : 'rebuilt!'})`)

  const rows: Run[] = []
  for (let i = 1; i <= runs && !signal.aborted; i++) {
    // One spec at a time, like the script: each scenario's time is its own.
    const vm = await runInVm({ ...(v.kernel !== undefined && { kernel: v.kernel }), accel, filters: ARTICLE_SPECS, workers: 1, baseline: true, initramfs: cached, log, signal })
    const row = collect(i, vm)
    rows.push(row)
    if (row.failure) for (const line of vm.run.consoleTail) log(`  console: ${line}`)
    log(`run ${i}: boot to verdict ${sec(row.bootToVerdictMs)}; ${row.scenarios.map((s) => `scenario ${s.scenario}: shell ${sec(s.shellMs)}, harness ${sec(s.harnessMs)}`).join('; ')}${row.failure ? `; FAILED: ${row.failure}` : ''}`)
  }

  let matrixRun: { ms: number; exitCode: number } | undefined
  if (!v['skip-matrix'] && !signal.aborted) {
    log('the four-kernel matrix, every spec (oomlab matrix):')
    const t = performance.now()
    const exitCode = await matrix(['--report', join(projectRoot, 'reports', 'bench-matrix')], signal)
    matrixRun = { ms: performance.now() - t, exitCode }
  }

  const ok = rows.filter((r) => !r.failure)
  const per = [1, 2, 3].map((n) => {
    const xs = ok.flatMap((r) => r.scenarios.filter((s) => s.scenario === n))
    const shellMs = median(xs.map((s) => s.shellMs))
    const harnessMs = median(xs.map((s) => s.harnessMs))
    const kd = xs.flatMap((s) => (s.killDetection ? [s.killDetection] : []))
    return {
      scenario: n,
      shellMs,
      harnessMs,
      ratio: harnessMs / shellMs,
      killDetectionMs: median(kd.map((k) => k.latencyMs)),
      killDetectionKernelMs: median(kd.map((k) => k.kernelMs ?? NaN)),
      killDetectionHarnessMs: median(kd.map((k) => k.harnessMs ?? NaN)),
    }
  })
  const totalShell = per.reduce((a, p) => a + p.shellMs, 0)
  const totalHarness = per.reduce((a, p) => a + p.harnessMs, 0)
  const phase = (from: string, to: string) => median(ok.map((r) => (r.phases[to] ?? NaN) - (r.phases[from] ?? NaN)))
  // Every passing run must have measured scenarios 2 and 3 (the group kills); a negative latency
  // (the cgroup emptied before the last record's timestamp, within the clock's uncertainty) is reported, not hidden.
  const unmeasured = ok.flatMap((r) => r.scenarios.filter((s) => s.scenario !== 1 && !s.killDetection).map((s) => `run ${r.run} scenario ${s.scenario}`))
  const worstLatency = unmeasured.length ? NaN : Math.max(...per.filter((p) => p.scenario !== 1).map((p) => p.killDetectionMs))
  const worst = per.find((p) => p.killDetectionMs === worstLatency)
  const summary = {
    date: new Date().toISOString(),
    runs: rows.length,
    passedRuns: ok.length,
    initramfs: { coldMs, cachedMs },
    scenarios: per,
    total: { shellMs: totalShell, harnessMs: totalHarness, ratio: totalHarness / totalShell },
    killDetectionMs: worstLatency,
    medianBootMs: median(ok.map((r) => r.bootMs ?? NaN)),
    // The shell script ran in the same boot: take its time out to get the harness's own run.
    medianBootToVerdictMs: median(ok.map((r) => r.bootToVerdictMs - ((r.phases.baselineDone ?? NaN) - (r.phases.agentStarted ?? NaN)))),
    guest: {
      initReadyMs: median(ok.map((r) => r.phases.initReady ?? NaN)),
      nodeStartMs: phase('initReady', 'agentStarted'),
      baselineMs: phase('agentStarted', 'baselineDone'),
      vitestImportMs: phase('baselineDone', 'vitestImported'),
      vitestStartupMs: phase('vitestImported', 'testRunStarted'),
      firstSpecStartMs: median(ok.map((r) => Math.min(...Object.entries(r.phases).filter(([k]) => k.startsWith('started ')).map(([, t]) => t)) - (r.phases.testRunStarted ?? NaN))),
      testRunMs: phase('testRunStarted', 'vitestDone'),
      vitestCloseMs: phase('vitestDone', 'vitestClosed'),
    },
    matrix: matrixRun,
    targets: TARGETS,
    rows,
  }
  const targetsMet = {
    ratio: summary.total.ratio <= TARGETS.ratio,
    killDetection: Number.isFinite(worstLatency) && worstLatency >= 0 && worstLatency < TARGETS.killDetectionMs,
    bootToVerdict: summary.medianBootToVerdictMs <= TARGETS.bootToVerdictMs,
    ...(matrixRun && { matrix: matrixRun.exitCode === 0 && matrixRun.ms <= TARGETS.matrixMs }),
  }
  const out = join(projectRoot, 'reports', 'bench.json')
  await mkdir(join(projectRoot, 'reports'), { recursive: true })
  await writeFile(out, `${JSON.stringify({ ...summary, targetsMet }, null, 2)}\n`)

  const g = summary.guest
  const lines = [
    '',
    `oomlab bench: ${ok.length} of ${rows.length} run(s) passed on ${rows[0]?.kernel ?? '-'} (${rows[0]?.accel ?? '-'}); medians below`,
    '',
    ' scenario                                shell script  harness   ratio   kill detection',
    ...per.map((p) => ` ${['', '1 memory.oom.group=0 on a leaf', '2 memory.oom.group=1 on a leaf', '3 memory.oom.group=1 on a parent'][p.scenario]!.padEnd(40)}${sec(p.shellMs).padEnd(14)}${sec(p.harnessMs).padEnd(10)}${`${p.ratio.toFixed(2)}x`.padEnd(8)}${ms(p.killDetectionMs)}${Number.isFinite(p.killDetectionHarnessMs) ? ` (kernel ${ms(p.killDetectionKernelMs)}, harness ${ms(p.killDetectionHarnessMs)})` : ''}`),
    ` ${'total'.padEnd(40)}${sec(totalShell).padEnd(14)}${sec(totalHarness).padEnd(10)}${summary.total.ratio.toFixed(2)}x`,
    '',
    ` harness vs shell script        ${summary.total.ratio.toFixed(2)}x    target <= ${TARGETS.ratio}x: ${met(targetsMet.ratio)}`,
    ...(unmeasured.length ? [` kill-detection latency not measured in: ${unmeasured.join(', ')}`] : []),
    ` kill-detection latency         ${ms(worstLatency)}  target < ${TARGETS.killDetectionMs} ms: ${met(targetsMet.killDetection)} (worst scenario's median: kernel log time of the last "Killed process" to the harness seeing "populated 0")`,
    `   of which the kernel          ${ms(worst?.killDetectionKernelMs)} (last record to the cgroup really empty: the victims' exit, from the populated tracepoint)`,
    `   of which the harness         ${ms(worst?.killDetectionHarnessMs)} (the kernel's "populated 0" to the harness knowing it)`,
    ` warm run, boot to verdict      ${sec(summary.medianBootToVerdictMs)}  (without the shell script's run) target <= ${sec(TARGETS.bootToVerdictMs)}: ${met(targetsMet.bootToVerdict)}`,
    `   QEMU start to agent hello    ${sec(summary.medianBootMs)} (guest /init at ${sec(g.initReadyMs)} of uptime, node agent up ${sec(g.nodeStartMs)} later)`,
    `   in the guest                 shell script ${sec(g.baselineMs)}; vitest import ${sec(g.vitestImportMs)}, start-up ${sec(g.vitestStartupMs)}, worker up to first spec ${sec(g.firstSpecStartMs)}; run ${sec(g.testRunMs)} in all; close ${sec(g.vitestCloseMs)}`,
    ` initramfs build                cold ${sec(coldMs)}, cached ${sec(cachedMs)}`,
    matrixRun
      ? ` four-kernel matrix (all specs) ${sec(matrixRun.ms)}  target <= ${sec(TARGETS.matrixMs)}: ${met(targetsMet.matrix ?? false)}${matrixRun.exitCode ? ` (matrix exit ${matrixRun.exitCode})` : ''}`
      : ' four-kernel matrix             skipped (--skip-matrix)',
    '',
    `written to ${out}`,
  ]
  console.log(lines.join('\n'))
  // A missed target fails the benchmark: that is how a target is checked.
  return ok.length === rows.length && Object.values(targetsMet).every(Boolean) ? 0 : 1
}
