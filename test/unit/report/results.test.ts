// Counting a run from vitest's results, on the lines a real run wrote (test/fixtures/results).
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { tally, type ResultLine } from '../../../src/report/results.js'

const real = readFileSync(new URL('../../fixtures/results/6.1-02-passed.jsonl', import.meta.url), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as ResultLine)
const run = real[0]!.run
const spec02 = '/work/main/experiments/02-leaf-oom-group-1.spec.ts'
const spec99 = '/work/main/experiments/99-throws.spec.ts'

describe('tally', () => {
  it('counts a passed run as vitest reported it', () => {
    expect(tally(real)).toMatchObject({ passed: 1, failed: 0, unsupported: 0, skipped: 0, notRun: 0, ended: true })
  })

  it('counts a spec file that failed before its tests (an import error) as one failure, with its message', () => {
    const start: ResultLine = { kind: 'start', run, modules: [{ project: 'experiments', file: spec02 }, { project: 'experiments', file: spec99 }] }
    const lines: ResultLine[] = [start, ...real.slice(1, 3), { kind: 'module', run, project: 'experiments', file: spec99, state: 'failed', errors: ['Error: boom at import'] }, real[3]!]
    const t = tally(lines)
    expect(t).toMatchObject({ passed: 1, failed: 1, notRun: 0 })
    expect(t.outcomes.find((o) => o.status === 'fail')).toMatchObject({ scenario: '99-throws', reason: 'Error: boom at import' })
  })

  it('tells what finished before an interrupt from what did not run', () => {
    const start: ResultLine = { kind: 'start', run, modules: [{ project: 'experiments', file: spec02 }, { project: 'experiments', file: spec99 }] }
    const t = tally([start, ...real.slice(1, 3)])
    expect(t).toMatchObject({ passed: 1, failed: 0, notRun: 1, ended: false })
    expect(t.outcomes.find((o) => o.file === spec99)).toMatchObject({ status: 'not run' })
  })

  it('counts skips: "unsupported: ..." apart from any other skip, each with its note', () => {
    const test = real[1] as Extract<ResultLine, { kind: 'test' }>
    const t = tally([
      { ...test, state: 'skipped', note: 'unsupported: the kernel has no memory.oom.group' },
      { ...test, name: 'b', scenario: 'b', state: 'skipped', note: 'needs root' },
      { ...test, name: 'c', scenario: 'c', state: 'failed', errors: ['expected shell (pid 140) to be killed'] },
    ])
    expect(t).toMatchObject({ passed: 0, failed: 1, unsupported: 1, skipped: 1 })
    expect(t.outcomes.map((o) => [o.status, o.reason])).toEqual([
      ['unsupported', 'the kernel has no memory.oom.group'],
      ['skipped', 'needs root'],
      ['fail', 'expected shell (pid 140) to be killed'],
    ])
  })
})

describe('scenario ids', () => {
  it("key evidence by spec, and by spec and test where a file holds several experiments", async () => {
    const { scenarioIdOf } = await import('../../../src/report/paths.js')
    expect(scenarioIdOf('/x/experiments/02-leaf-oom-group-1.spec.ts', 'memory.oom.group=1 on a leaf', 1)).toBe('02-leaf-oom-group-1')
    const a = scenarioIdOf('/x/my.spec.ts', 'web dies whole', 2)
    const b = scenarioIdOf('/x/my.spec.ts', 'db survives', 2)
    expect([a, b]).toEqual(['my--web-dies-whole', 'my--db-survives'])
  })
})
