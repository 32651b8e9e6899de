/**
 * oomlab matrix: every experiment spec on each kernel (by default every reachable Debian line),
 * in VMs with bounded parallelism, then one report over all of them.
 */
import { parseArgs } from 'node:util'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import { prepareLabGuest } from '../vm/prepare.js'
import type { PreparedGuest } from '../vm/restore.js'
import { PREPARED_ENV } from '../experiment/global-setup.js'
import { evidenceDirOf } from '../report/paths.js'
import { parseKernelSpec, kernelFromImage } from '../vm/kernels.js'
import { readEvidenceDir } from '../report/evidence.js'
import { writeReport, formatTable } from '../report/write.js'
import { cellOf, scenarioIds, type KernelRun } from '../report/matrix.js'
import { userReports } from '../util/paths.js'
import { UserError, errorMessage } from '../util/errors.js'
import { log, progress, endProgress, runVitest, preparedFile } from './experiments.js'
import { positiveInt } from './args.js'

/** 0 all passed; 1 something failed; 3 nothing failed but some scenario is unsupported on some kernel; 130 interrupted. */
export function exitCodeOf(o: { failed: number; unsupported: number; interrupted: boolean }): number {
  if (o.interrupted) return 130
  if (o.failed > 0) return 1
  return o.unsupported > 0 ? 3 : 0
}

export const MATRIX_DEFAULT = ['bullseye', 'bookworm', 'trixie', 'sid']

const USAGE = 'oomlab matrix [KERNEL...] [--kernel-image PATH]... [--jobs N] [--report DIR] [--spec FILTER]... [--accel auto|kvm|tcg] [--memory MiB] [--cpus N]'

/** Runs `jobs` at a time, in order of the list. */
async function bounded<T, R>(items: readonly T[], jobs: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker))
  return results
}

export async function matrix(argv: string[], signal: AbortSignal): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'kernel-image': { type: 'string', multiple: true },
        jobs: { type: 'string' },
        report: { type: 'string' },
        spec: { type: 'string', multiple: true },
        accel: { type: 'string' },
        memory: { type: 'string' },
        cpus: { type: 'string' },
      },
    })
  } catch (err) {
    throw new UserError(`${(err as Error).message.split(/\.\s/)[0]} (${USAGE})`)
  }
  const v = parsed.values
  const images = v['kernel-image'] ?? []
  const names = parsed.positionals.length || images.length ? parsed.positionals : MATRIX_DEFAULT
  for (const n of names) parseKernelSpec(n)
  const accel = (v.accel ?? 'auto') as 'auto' | 'kvm' | 'tcg'
  if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new UserError(`--accel ${JSON.stringify(v.accel)}: expected auto, kvm or tcg`)
  // One VM per core: measured on 2 cores, two kernels took 63.5 s with 2 VMs at once and 97.2 s one
  // at a time (each guest slower, 61 s against 47.5 s, but the two overlap).
  const jobs = positiveInt('jobs', v.jobs, 1, 16) ?? Math.max(1, availableParallelism())
  const memoryMiB = positiveInt('memory', v.memory, 512, 65536)
  const cpus = positiveInt('cpus', v.cpus, 1, 64)
  for (const f of v.spec ?? []) if (!/^[\w.-]+$/.test(f)) throw new UserError(`--spec ${JSON.stringify(f)}: use part of a spec file name, e.g. 02-leaf`)
  for (const image of images) await kernelFromImage(image)
  const reportDir = resolve(v.report ?? userReports('matrix'))
  const targets: { name: string; image?: string }[] = [...names.map((name) => ({ name })), ...images.map((image) => ({ name: resolve(image), image: resolve(image) }))]
  log(`matrix: ${targets.map((t) => t.name).join(', ')}; ${jobs} guest(s) at a time; report in ${reportDir}`)
  const t0 = performance.now()
  // Each kernel's guest prepared (fetched, snapshotted) first, `jobs` at a time; then one vitest run
  // over kernels x specs, each cell a guest restored from its kernel's snapshot.
  const failures = new Map<string, string>()
  const prepared: Record<string, PreparedGuest> = {}
  await bounded(targets, jobs, async (t) => {
    try {
      prepared[t.name] = await prepareLabGuest(
        { ...(t.image ? { kernelImage: t.image } : { kernel: t.name }), accel, ...(memoryMiB && { memoryMiB }), ...(cpus && { cpus }) },
        { log: (line) => log(`[${t.name}] ${line}`), progress: (key, text, f) => progress(`${t.name} ${key}`, `[${t.name}] ${text}`, f), signal },
      )
    } catch (err) {
      if (signal.aborted) throw err
      log(`[${t.name}] FAILED: ${errorMessage(err)}`)
      failures.set(t.name, errorMessage(err))
    }
  })
  endProgress()
  const ready = targets.filter((t) => prepared[t.name])
  let r = { passed: 0, failed: 0, skipped: 0, exitCode: 0, reported: true, timedOut: false }
  if (ready.length > 0) {
    await using file = await preparedFile(prepared)
    const env = {
      ...process.env,
      OOMLAB_KERNELS: ready.map((t) => t.name).join(','),
      OOMLAB_REPORT_DIR: reportDir,
      OOMLAB_JOBS: String(jobs),
      [PREPARED_ENV]: file.path,
    } as Record<string, string>
    r = await runVitest('experiments@*', v.spec ?? [], env, signal)
  }
  // Kernels that could not be prepared get their column too, with the reason.
  const runs: KernelRun[] = targets.map((t) => ({ name: t.name, where: 'vm', ...(failures.has(t.name) && { failure: failures.get(t.name)! }), evidence: [] }))
  for (const run of runs) {
    if (run.failure) continue
    run.evidence = await readEvidenceDir(evidenceDirOf(reportDir, run.name))
    const release = run.evidence.find((e) => e.kernel.release)?.kernel.release ?? prepared[run.name]?.kernel.release
    if (release) run.release = release
  }
  if (failures.size > 0 || (r.exitCode !== 0 && r.failed === 0)) {
    if (r.exitCode !== 0 && r.failed === 0 && !signal.aborted) for (const run of runs) run.failure ??= `vitest exited with ${r.exitCode}`
    await writeReport(reportDir, runs)
  }
  console.log(`\n${formatTable(runs)}\n`)
  console.log(`oomlab: matrix of ${runs.length} kernel(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s; report in ${reportDir} (summary.txt, report.md, report.json, junit.xml, vitest.json, figures/)`)
  const ids = scenarioIds(runs)
  const statuses = runs.flatMap((run) => (ids.length ? ids.map((id) => cellOf(run, id).status) : ['fail']))
  const failed = statuses.filter((s) => s === 'fail').length
  const passed = statuses.filter((s) => s === 'pass').length
  const unsupported = statuses.filter((s) => s === 'unsupported').length
  if (unsupported) console.log(`oomlab: ${unsupported} scenario/kernel pair(s) unsupported (skipped; see the report)`)
  console.log(`oomlab: ${passed} passed, ${failed} failed${unsupported ? `, ${unsupported} skipped` : ''}`)
  return exitCodeOf({ failed, unsupported, interrupted: signal.aborted })
}
