/**
 * A run's report from what this run produced: vitest's results (the verdicts and the counts), then the
 * evidence each of those tests wrote (the detail). Nothing else in the folder is read.
 */
import { readFile } from 'node:fs/promises'
import type { Evidence } from '../report/evidence.js'
import type { KernelRun } from '../report/matrix.js'
import { reportPaths } from '../report/paths.js'
import { readResults, tally, type Tally } from '../report/results.js'
import { projectOf, type KernelTarget, type RunConfig } from './config.js'

/** The kernel name a run's evidence is filed under: none for a run on one kernel, the kernel's in a matrix. */
export const evidenceKernelOf = (config: Pick<RunConfig, 'kernels'>, kernel: KernelTarget | undefined) => (config.kernels.length > 1 ? kernel?.name : undefined)

export async function readTally(config: RunConfig): Promise<Tally> {
  return tally(await readResults(reportPaths(config.report).results, config.id))
}

async function readEvidence(path: string, run: string): Promise<Evidence | undefined> {
  try {
    const e = JSON.parse(await readFile(path, 'utf8')) as Evidence
    return e.run === undefined || e.run === run ? e : undefined
  } catch {
    return undefined
  }
}

/**
 * One KernelRun per kernel (one for the host natively): its tests' outcomes, and the evidence of each.
 * `failures` names kernels whose guest could not be prepared; `releases` what each kernel turned out to be.
 */
export async function collectRuns(config: RunConfig, t: Tally, o: { failures?: ReadonlyMap<string, string>; releases?: Record<string, string>; runFailure?: string } = {}): Promise<KernelRun[]> {
  const paths = reportPaths(config.report)
  const targets: (KernelTarget | undefined)[] = config.machine.kind === 'native' ? [undefined] : config.kernels
  const runs: KernelRun[] = []
  for (const k of targets) {
    const project = projectOf(config, k)
    const outcomes = t.outcomes.filter((x) => x.project === project)
    const evidence: Evidence[] = []
    for (const x of outcomes) {
      const e = await readEvidence(paths.evidence(evidenceKernelOf(config, k), x.scenario), config.id)
      if (e && !evidence.some((y) => y.file === x.scenario)) evidence.push({ ...e, file: x.scenario })
    }
    const release = evidence.find((e) => e.kernel.release)?.kernel.release ?? (k ? o.releases?.[k.name] : undefined)
    const failure = (k && o.failures?.get(k.name)) ?? (outcomes.length === 0 ? o.runFailure : undefined)
    runs.push({
      name: k?.name ?? release ?? 'host',
      ...(release !== undefined && { release }),
      where: config.machine.kind === 'native' ? 'native' : 'vm',
      ...(failure !== undefined && { failure }),
      evidence,
      outcomes,
    })
  }
  return runs
}
