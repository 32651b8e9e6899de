/**
 * The run's results as vitest gives them: one JSON line per test and per spec file, appended as each
 * finishes, so an interrupted run still says what passed and failed before it stopped. The CLI counts
 * from these, never from evidence files; evidence adds detail.
 */
import { readFile } from 'node:fs/promises'
import { specIdOf } from './paths.js'

export type ResultLine =
  | { kind: 'start'; run: string; modules: { project: string; file: string }[] }
  | { kind: 'test'; run: string; project: string; file: string; name: string; scenario: string; state: 'passed' | 'failed' | 'skipped' | 'pending'; errors: string[]; note?: string }
  | { kind: 'module'; run: string; project: string; file: string; state: string; errors: string[] }
  | { kind: 'end'; run: string; reason: string }

export async function readResults(path: string, run: string): Promise<ResultLine[]> {
  const text = await readFile(path, 'utf8').catch(() => '')
  const out: ResultLine[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    try {
      const r = JSON.parse(line) as ResultLine
      // Lines of another run never count as this one's.
      if (r.run === run) out.push(r)
    } catch {
      /* a line cut by an interrupt */
    }
  }
  return out
}

export interface TestOutcome {
  project: string
  file: string
  /** The scenario's id (keys its evidence), or the spec's id for a file that failed before its tests. */
  scenario: string
  name: string
  status: 'pass' | 'fail' | 'unsupported' | 'skipped' | 'not run'
  reason?: string
}

export interface Tally {
  outcomes: TestOutcome[]
  passed: number
  failed: number
  unsupported: number
  skipped: number
  /** Spec files that were to run and did not finish (an interrupt, a vitest that died). */
  notRun: number
  /** Whether vitest said the run ended. */
  ended: boolean
}

/**
 * Counts what vitest reported: every test is passed, failed, unsupported (skipped with "unsupported: ..."),
 * or skipped with its note; a spec file that failed outside its tests (an import error, a worker that
 * died, a guest that could not be had) is one failure, named; a file that never finished is "not run".
 */
export function tally(lines: ResultLine[]): Tally {
  const outcomes: TestOutcome[] = []
  const key = (project: string, file: string) => `${project}\0${file}`
  const finished = new Set<string>()
  const failedTests = new Set<string>()
  for (const r of lines) {
    if (r.kind === 'test') {
      const base = { project: r.project, file: r.file, scenario: r.scenario, name: r.name }
      if (r.state === 'passed') outcomes.push({ ...base, status: 'pass' })
      else if (r.state === 'failed') {
        outcomes.push({ ...base, status: 'fail', reason: r.errors[0] ?? 'failed' })
        failedTests.add(key(r.project, r.file))
      } else if (r.note?.startsWith('unsupported:')) outcomes.push({ ...base, status: 'unsupported', reason: r.note.replace(/^unsupported:\s*/, '') })
      else outcomes.push({ ...base, status: 'skipped', reason: r.note ?? (r.state === 'pending' ? 'did not run' : 'skipped') })
    }
  }
  for (const r of lines) {
    if (r.kind !== 'module') continue
    finished.add(key(r.project, r.file))
    // A file's own error (not a test's) is a failure of its own, with its message.
    if (r.state === 'failed' && !failedTests.has(key(r.project, r.file)))
      outcomes.push({ project: r.project, file: r.file, scenario: specIdOf(r.file), name: specIdOf(r.file), status: 'fail', reason: r.errors[0] ?? 'the spec file failed before its tests ran' })
  }
  const start = lines.find((r) => r.kind === 'start')
  let notRun = 0
  for (const m of start?.kind === 'start' ? start.modules : []) {
    if (finished.has(key(m.project, m.file))) continue
    notRun++
    if (!outcomes.some((o) => o.project === m.project && o.file === m.file)) outcomes.push({ project: m.project, file: m.file, scenario: specIdOf(m.file), name: specIdOf(m.file), status: 'not run', reason: 'did not run' })
  }
  const count = (s: TestOutcome['status']) => outcomes.filter((o) => o.status === s).length
  return { outcomes, passed: count('pass'), failed: count('fail'), unsupported: count('unsupported'), skipped: count('skipped'), notRun, ended: lines.some((r) => r.kind === 'end') }
}
