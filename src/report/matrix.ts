/** One run of the specs on one kernel, and the verdict of each scenario on each kernel. */
import type { Evidence } from './evidence.js'
import type { TestOutcome } from './results.js'

export interface KernelRun {
  /** What the user named: a suite, a version, or an image path. */
  name: string
  release?: string
  where: 'vm' | 'native'
  /** Why the run as a whole failed (download, panic, hang): every scenario then has no verdict. */
  failure?: string
  evidence: Evidence[]
  /** What vitest reported for this kernel: the verdicts. Evidence adds detail; without outcomes, evidence alone says. */
  outcomes?: TestOutcome[]
  timings?: Record<string, number | undefined>
}

export type Cell =
  | { status: 'pass'; evidence?: Evidence }
  | { status: 'fail'; reason: string; evidence?: Evidence }
  | { status: 'unsupported'; reason: string; evidence?: Evidence }
  | { status: 'skipped' | 'not run'; reason: string; evidence?: Evidence }

export const kernelLabel = (r: KernelRun) => (r.release && r.release !== r.name ? `${r.name} (${r.release})` : r.name)

export function scenarioIds(runs: readonly KernelRun[]): string[] {
  return [...new Set(runs.flatMap((r) => [...r.evidence.map((e) => e.file!), ...(r.outcomes ?? []).map((o) => o.scenario)]))].sort()
}

export function cellOf(run: KernelRun, scenario: string): Cell {
  const e = run.evidence.find((x) => x.file === scenario)
  if (run.outcomes) {
    const o = run.outcomes.find((x) => x.scenario === scenario)
    if (!o) return { status: 'fail', reason: run.failure ?? 'the scenario did not run' }
    const evidence = e ? { evidence: e } : {}
    if (o.status === 'pass') return { status: 'pass', ...evidence }
    if (o.status === 'fail') return { status: 'fail', reason: o.reason ?? 'failed', ...evidence }
    return { status: o.status, reason: o.reason ?? o.status, ...evidence }
  }
  if (!e) return { status: 'fail', reason: run.failure ?? 'no evidence: the scenario did not run' }
  if (e.verdict.state === 'pass') return { status: 'pass', evidence: e }
  if (e.verdict.state === 'unsupported') return { status: 'unsupported', reason: e.verdict.errors?.[0] ?? 'unsupported', evidence: e }
  return { status: 'fail', reason: e.verdict.errors?.[0] ?? `verdict ${e.verdict.state}`, evidence: e }
}

/** What a kernel did not expose, as the specs found by probing it (not by its version). */
export function adaptations(run: KernelRun): string[] {
  const caps = new Map<string, boolean>()
  for (const e of run.evidence) for (const [k, v] of Object.entries(e.capabilities ?? {})) caps.set(k, (caps.get(k) ?? false) || v)
  return [...caps].filter(([, v]) => !v).map(([k]) => `${k}: not exposed on ${run.release ?? run.name}`)
}
