/**
 * What the CLI prints and counts is the run that just happened: counted from vitest's results, not from
 * evidence files; a spec that fails at import is a failure, named, on one kernel and on two; a folder
 * used again holds only the last run's results; a copied checkout runs its own sources; an interrupted
 * run says what finished and what did not. The specs (test/fixtures/specs) need no guest; the kernels'
 * guests are prepared (from the cache) as for any run.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execa } from 'execa'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise'
import { projectRoot, cacheDir } from '../../src/util/paths.js'
import { labGuestSkipReason } from '../helpers/lab-guest.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'
import { oomlab as oomlabIn, OOMLAB } from '../helpers/oomlab.js'
import { startChild } from '../helpers/child.js'
import { until } from '../helpers/poll.js'

const T = timeoutScale()
const why = labGuestSkipReason()
const spec = (name: string) => join(projectRoot, 'test/fixtures/specs', `${name}.spec.ts`)
const closing = (out: string) => out.trim().split('\n').at(-1)

describe.skipIf(why !== '')(`the CLI's results are this run's${why ? ` (skipped: ${why})` : ''}`, () => {
  let work: DirectoryResult
  beforeAll(async () => void (work = await tmpDir({ prefix: 'oomlab-results-', unsafeCleanup: true })))
  afterAll(async () => work?.cleanup())

  const oomlab = (args: string[], o: { root?: string } = {}) => oomlabIn(args, { ...o, cwd: work.path, env: { OOMLAB_RESTORE_AHEAD: '0' } })

  it('counts a spec that throws at import as a failure, on one kernel', { timeout: 300_000 * T }, async () => {
    const r = await oomlab(['matrix', 'bookworm', spec('throws-at-import'), spec('trivial'), '--report', join(work.path, 'one')])
    expect(r.exitCode, r.all).toBe(1)
    expect(closing(r.all)).toBe('oomlab: 1 passed, 1 failed')
    expect(r.all).toMatch(/^FAIL  throws-at-import: (Error: )?boom at import$/m)
  })

  it('and on two kernels', { timeout: 600_000 * T }, async () => {
    const { release } = JSON.parse(readFileSync(join(cacheDir(), 'kernels/suites/bookworm.json'), 'utf8')) as { release: string }
    const image = join(cacheDir(), 'kernels', release, 'vmlinuz')
    const r = await oomlab(['matrix', 'bookworm', '--kernel-image', image, spec('throws-at-import'), spec('trivial'), '--report', join(work.path, 'two')])
    expect(r.exitCode, r.all).toBe(1)
    expect(closing(r.all)).toBe('oomlab: 2 passed, 2 failed')
    expect(r.all.match(/throws-at-import on [^\n]*: (Error: )?boom at import/g), r.all).toHaveLength(2)
  })

  it('reports only this run in a folder an earlier run used', { timeout: 300_000 * T }, async () => {
    const report = join(work.path, 'again')
    const first = await oomlab(['reproduce', '--vm', spec('trivial'), '--report', report])
    expect(closing(first.all), first.all).toBe('oomlab: 1 passed, 0 failed')
    const second = await oomlab(['reproduce', '--vm', spec('throws-at-import'), '--report', report])
    expect(second.exitCode).toBe(1)
    expect(second.all).not.toMatch(/a trivial scenario/)
    expect(closing(second.all)).toBe('oomlab: 0 passed, 1 failed')
    expect(readFileSync(join(report, 'junit.xml'), 'utf8')).not.toContain('a trivial scenario')
    expect(existsSync(join(report, 'evidence/trivial.json'))).toBe(false)
  })

  it('runs the sources of a copied checkout, not the original\'s', { timeout: 300_000 * T }, async () => {
    const copy = join(work.path, 'copy')
    // As cp -a does (names, sizes and mtimes kept), node_modules and the CLI's bundle too; hard links keep it quick.
    await execa('cp', ['-al', projectRoot, copy])
    const spec02 = join(copy, 'experiments/02-leaf-oom-group-1.spec.ts')
    // A new file in the copy (the hard link to the original's is replaced, not written through).
    writeFileSync(`${spec02}.new`, "import { test, expect } from 'vitest'\n\ntest('the copy\\'s own spec 02', () => {\n  expect('copy').toBe('original')\n})\n")
    renameSync(`${spec02}.new`, spec02)
    const r = await oomlab(['reproduce', '--vm', '02-', '--report', join(work.path, 'copied')], { root: copy })
    expect(r.exitCode, r.all).toBe(1)
    expect(r.all).toMatch(/the copy's own spec 02/)
    expect(closing(r.all)).toBe('oomlab: 0 passed, 1 failed')
  })

  it('says, when interrupted, what passed before it and that the rest did not run', { timeout: 300_000 * T }, async () => {
    const report = join(work.path, 'interrupted')
    const child = startChild(process.execPath, [OOMLAB, 'reproduce', '--vm', '--jobs', '2', spec('trivial'), spec('waits'), '--report', report], { cwd: work.path })
    // Interrupted once the trivial spec's result is on record.
    const results = join(report, 'results.jsonl')
    await until(`a passed result in ${results}`, () => existsSync(results) && readFileSync(results, 'utf8').includes('"state":"passed"'), { timeoutMs: 240_000 * T, everyMs: 100 })
    child.kill('SIGINT')
    const end = await child.closed
    expect(end.code, child.output()).toBe(130)
    expect(child.output()).toMatch(/interrupted: before it, 1 experiment\(s\) passed and 0 failed; 1 spec file\(s\) did not run/)
    expect(closing(child.output())).toBe('oomlab: 1 passed, 0 failed')
  })
})
