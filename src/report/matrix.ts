/** One run of the specs on one kernel, and the verdict of each scenario on each kernel. */
import { CAPABILITIES, eventsCountLocally, expectedCapabilities, kernelVersion } from '../kernel/capabilities.js'
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

/**
 * What a kernel exposed, as the specs probed it, beside what its upstream version must have: one line
 * per kernel, and a second naming what it lacks though its version must have it (those specs failed).
 */
export function capabilityLines(run: KernelRun): string[] {
  const probed = run.evidence.find((e) => e.capabilities && Object.keys(e.capabilities).length > 0)
  if (!probed) return []
  const release = run.release ?? probed.kernel.release
  const expected: Record<string, boolean> = probed.capabilitiesExpected ?? expectedCapabilities(release)
  const v = kernelVersion(release)
  const known = CAPABILITIES as readonly string[]
  const order = (c: string) => (known.includes(c) ? known.indexOf(c) : known.length)
  const names = Object.keys(probed.capabilities).sort((a, b) => order(a) - order(b))
  const has = names.filter((c) => probed.capabilities[c])
  const older = names.filter((c) => !probed.capabilities[c] && !expected[c])
  const missing = names.filter((c) => !probed.capabilities[c] && expected[c])
  const required = names.filter((c) => expected[c])
  const options = probed.kernel.cgroup2Options?.split(',').filter((o) => o.startsWith('memory_')) ?? []
  const lines = [
    `${kernelLabel(run)}, Linux ${v ? `${v[0]}.${v[1]}` : '(version unknown)'}: has ${has.join(', ') || 'none'}; its version must have ${required.join(', ') || 'none'}` +
      (older.length ? `; lacks ${older.join(', ')} (not required by its version)` : '') +
      (options.length ? `; cgroup2 mounted with ${options.join(',')}` : '') +
      (eventsCountLocally(release, probed.kernel.cgroup2Options) ? '; memory.events counts each event in its own cgroup only' : ''),
  ]
  if (missing.length) lines.push(`${kernelLabel(run)}: LACKS ${missing.join(', ')}, which its version must have`)
  return lines
}
