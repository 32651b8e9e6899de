/**
 * junit.xml from vitest's JUnit reporter (src/vitest/junit.ts): one suite per kernel, one case per spec,
 * failures with vitest's message; and the results lines oomlab counts from (src/vitest/reporter.ts). Run on a
 * stand-in matrix of two projects (test/fixtures/junit), by vitest.
 */
import { describe, it, expect } from 'vitest'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { dir } from 'tmp-promise'
import { projectRoot, vitestBin } from '../../../src/util/paths.js'
import type { RunConfig } from '../../../src/run/config.js'
import { readResults, tally, type Tally } from '../../../src/report/results.js'
import { timeoutScale } from '../../../src/util/timeout-scale.js'

const fixture = join(projectRoot, 'test/fixtures/junit')

async function matrixOf(env: Record<string, string>): Promise<{ xml: string; stdout: string; tally: Tally }> {
  const out = await dir({ unsafeCleanup: true })
  try {
    const report = join(out.path, 'report')
    mkdirSync(report)
    const run: RunConfig = { id: 'junit-test', by: 'cli', machine: { kind: 'guest', accel: 'tcg', append: [], refresh: false }, kernels: [{ name: 'bullseye' }, { name: 'sid' }], specs: [], jobs: 2, report }
    writeFileSync(join(report, 'run.json'), JSON.stringify(run))
    const r = await execa(process.execPath, [vitestBin(), 'run', '--config', join(fixture, 'vitest.config.ts')], { cwd: fixture, env: { ...env, JUNIT_OUT: out.path, JUNIT_RUN: join(report, 'run.json') }, reject: false })
    return { xml: readFileSync(join(out.path, 'junit.xml'), 'utf8'), stdout: String(r.stdout), tally: tally(await readResults(join(report, 'results.jsonl'), run.id)) }
  } finally {
    await out.cleanup()
  }
}

describe('junit.xml', () => {
  it('has one suite per kernel and one case per spec, named after it', { timeout: 60_000 * timeoutScale() }, async () => {
    const { xml } = await matrixOf({})
    expect(xml.match(/<testsuite name="[^"]*"/g)).toEqual(['<testsuite name="bullseye"', '<testsuite name="sid"'])
    expect(xml.match(/<testcase classname="sid" name="[^"]*"/g)).toEqual(['<testcase classname="sid" name="01-one: the first scenario"', '<testcase classname="sid" name="02-two: the second scenario"'])
    expect(xml).toContain('<testsuites name="oom-group-lab" tests="4" failures="0"')
  })

  it('counts a failing spec in its kernel\'s suite, with vitest\'s message', { timeout: 60_000 * timeoutScale() }, async () => {
    const { xml, tally } = await matrixOf({ FAIL_ON: 'sid/02' })
    // The same run as oomlab counts it, from the results lines.
    expect(tally).toMatchObject({ passed: 3, failed: 1, notRun: 0, ended: true })
    expect(tally.outcomes.find((o) => o.status === 'fail')).toMatchObject({ project: 'experiments@sid', scenario: '02-two' })
    expect(xml).toMatch(/<testsuite name="bullseye" [^>]* tests="2" failures="0"/)
    expect(xml).toMatch(/<testsuite name="sid" [^>]* tests="2" failures="1"/)
    expect(xml).toContain("<failure message=\"expected &apos;killed&apos; to be &apos;survived&apos;")
  })

  it('comes with a plain progress line per cell done (kernel, spec, verdict), numbered of all cells', { timeout: 60_000 * timeoutScale() }, async () => {
    const { stdout } = await matrixOf({ FAIL_ON: 'sid/02' })
    const lines = stdout.split('\n').filter((l) => l.startsWith('oomlab: matrix:'))
    expect(lines.map((l) => l.replace(/\(.*\)/, '(…)'))).toEqual([1, 2, 3, 4].map((n) => `oomlab: matrix: ${n} of 4 cells done (…)`))
    expect(lines).toContainEqual(expect.stringMatching(/cells done \(sid 02-two: failed\)$/))
    expect(lines).toContainEqual(expect.stringMatching(/cells done \(bullseye 01-one: passed\)$/))
  })
})
