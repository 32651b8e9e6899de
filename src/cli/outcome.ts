/** What a run tells the terminal: this run's verdicts, where they ran, where the report is, and the counts. */
import { formatScenario } from '../report/summary.js'
import { formatTable } from '../report/write.js'
import { kernelLabel, type KernelRun } from '../report/matrix.js'
import type { TestOutcome } from '../report/results.js'
import type { RunOutcome } from './experiments.js'

/**
 * 0 all passed; 1 something failed; 3 nothing failed but some scenario is unsupported; 130 interrupted;
 * 125 (git bisect run's "skip") when the only failures are the specs of a kernel built from source that
 * did not build or boot: `notReady` counts those specs among `failed`.
 */
export function exitCodeOf(o: { failed: number; unsupported: number; interrupted: boolean; notReady?: number }): number {
  if (o.interrupted) return 130
  if (o.failed > (o.notReady ?? 0)) return 1
  if ((o.notReady ?? 0) > 0) return 125
  return o.unsupported > 0 ? 3 : 0
}

/** The specs lost to kernels built from source that could not be built or booted (each a failure in the counts). */
export function notReadyOf(o: Pick<RunOutcome, 'config' | 'failures'>): number {
  const lost = o.config.kernels.filter((k) => k.src !== undefined && o.failures.has(k.name)).length
  return lost * Math.max(1, o.config.specs.length)
}

const STATE: Record<TestOutcome['status'], string> = { pass: 'pass', fail: 'fail', unsupported: 'unsupported', skipped: 'skipped', 'not run': 'not run' }

/** One kernel's scenarios, each with its table when it left evidence, else its verdict and why. */
function scenarios(run: KernelRun): string[] {
  return [...(run.outcomes ?? [])].sort((a, b) => a.scenario.localeCompare(b.scenario)).map((o) => {
    const e = run.evidence.find((x) => x.file === o.scenario)
    if (e) return formatScenario({ ...e, verdict: { state: STATE[o.status], errors: o.status === 'pass' ? [] : [o.reason ?? o.status] } })
    return `${o.status === 'pass' ? 'PASS' : o.status.toUpperCase()}  ${o.scenario}: ${o.status === 'pass' ? o.name : (o.reason ?? o.status)}`
  })
}

export interface Counts {
  passed: number
  failed: number
  unsupported: number
  skipped: number
}

/** Prints the outcome; returns the counts the exit code follows. Unit test counts, when there were any, add in. */
export function printOutcome(o: RunOutcome, unit: { passed: number; failed: number; skipped: number } = { passed: 0, failed: 0, skipped: 0 }): Counts {
  const { config, tally: t, runs } = o
  const out: string[] = []
  if (runs.length === 1 && !o.failures.size) out.push(...scenarios(runs[0]!).flatMap((s) => [s, '']))
  else out.push(formatTable(runs), '')
  for (const r of runs) if (r.failure && runs.length === 1) out.push(`FAILED: ${kernelLabel(r)}: ${r.failure}`, '')
  console.log(`\n${out.join('\n')}`)
  const accel = Object.values(config.prepared ?? {})[0]?.spec.accel
  const m = config.machine
  const where = m.kind === 'native' ? `natively${m.scope ? ` in the delegated scope ${m.scope}` : m.cgroupRoot ? ` under ${m.cgroupRoot}` : ''}` : `in QEMU guests (${accel === 'kvm' ? 'KVM' : 'TCG, no KVM'})`
  const kernels = runs.map(kernelLabel).join(', ')
  console.log(`oomlab: the experiments ran ${where} on ${runs.length > 1 ? 'kernels' : 'kernel'} ${kernels}; report in ${config.report}`)
  // Each spec on a kernel whose guest could not be prepared is a failure of its own.
  const lost = o.failures.size * Math.max(1, config.specs.length)
  const failed = unit.failed + t.failed + lost + (o.interrupted ? 0 : t.notRun)
  const counted = { passed: unit.passed + t.passed, failed: failed + (o.failure !== undefined && failed === 0 ? 1 : 0), unsupported: t.unsupported, skipped: unit.skipped + t.skipped }
  if (o.failure !== undefined && !o.interrupted) console.log(`oomlab: FAILED: ${o.failure}`)
  if (o.interrupted) console.log(`oomlab: interrupted: before it, ${t.passed} experiment(s) passed and ${t.failed} failed; ${t.notRun} spec file(s) did not run`)
  if (t.unsupported) console.log(`oomlab: ${t.unsupported} scenario(s) unsupported on the kernel (skipped with the reason; see the report)`)
  if (t.skipped) console.log(`oomlab: ${t.skipped} experiment(s) skipped: ${[...new Set(t.outcomes.filter((x) => x.status === 'skipped').map((x) => x.reason))].join('; ')}`)
  if (unit.skipped) console.log(`oomlab: ${unit.skipped} unit test(s) skipped (each says why in its name, above)`)
  const skipped = counted.unsupported + counted.skipped
  console.log(`oomlab: ${counted.passed} passed, ${counted.failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
  return counted
}
