/**
 * The npm package, the way a user meets it: `npm pack`, installed into an empty folder, then a spec of
 * one's own (the README's container-runtime example) run through `npx oomlab reproduce` and through plain
 * `npx vitest`, and one of the article's specs from what the package ships. Each leaves its evidence in
 * the user's folder.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execa } from 'execa'
import { copyFile, readFile, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise'
import { packageRoot } from '../src/util/paths.js'
import { labGuestSkipReason } from './helpers/lab-guest.js'
import { timeoutScale } from '../src/util/timeout-scale.js'
import type { Evidence } from '../src/report/evidence.js'

const T = timeoutScale()
const why = labGuestSkipReason()

describe.skipIf(why !== '')(`the npm package${why ? ` (skipped: ${why})` : ''}`, () => {
  let work: DirectoryResult
  let user: string

  beforeAll(async () => {
    work = await tmpDir({ prefix: 'oomlab-package-', unsafeCleanup: true })
    const pack = await execa('npm', ['pack', '--json', '--pack-destination', work.path], { cwd: packageRoot })
    const [{ filename, files }] = JSON.parse(pack.stdout) as [{ filename: string; files: { path: string }[] }]
    // Only what a user runs: no sources, tests or fixtures.
    expect(files.map((f) => f.path).filter((p) => /^(src|test|experiments|examples)\//.test(p))).toEqual([])
    user = join(work.path, 'user')
    await execa('mkdir', [user])
    await execa('npm', ['init', '-y'], { cwd: user })
    await execa('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work.path, filename)], { cwd: user })
    await copyFile(join(packageRoot, 'examples/container-runtime.spec.ts'), join(user, 'my-layout.spec.ts'))
  }, 300_000 * T)

  afterAll(async () => {
    await work?.cleanup()
  })

  const evidenceOf = async (id: string, run = 'latest') => JSON.parse(await readFile(join(user, 'reports', run, 'evidence', `${id}.json`), 'utf8')) as Evidence

  it('npx oomlab reproduce ./my-layout.spec.ts: the spec of one\'s own runs, report and evidence in the user\'s folder', { timeout: 300_000 * T }, async () => {
    const r = await execa('npx', ['oomlab', 'reproduce', './my-layout.spec.ts'], { cwd: user, reject: false, all: true })
    expect(r.exitCode, r.all).toBe(0)
    expect(r.all).toMatch(/PASS {2}my-layout: a slice of two containers/)
    expect(r.all).toMatch(/group kill: runtime\.slice\/web\.scope/)
    expect((await evidenceOf('my-layout')).verdict.state).toBe('pass')
    expect(await readdir(join(user, 'reports/latest'))).toEqual(expect.arrayContaining(['summary.txt', 'report.md', 'junit.xml', 'vitest.json', 'figures', 'evidence']))
  })

  it('plain npx vitest: the same spec, with its evidence', { timeout: 300_000 * T }, async () => {
    // The CLI's report is gone first: what is read below is plain vitest's. In a guest, also on a host that could run it natively.
    await rm(join(user, 'reports'), { recursive: true, force: true })
    const r = await execa('npx', ['vitest', 'run'], { cwd: user, reject: false, all: true, env: { OOMLAB_VM: '1' } })
    expect(r.exitCode, r.all).toBe(0)
    expect(r.all).toMatch(/1 passed/)
    // Without oomlab's vitest config there is no run to report on: the evidence alone, in reports/vitest.
    const e = await evidenceOf('my-layout', 'vitest')
    expect(e.verdict.state).toBe('pass')
    expect(e.processes.filter((p) => p.fate === 'survived').map((p) => p.cgroup)).toEqual(['runtime.slice/db.scope', 'runtime.slice/db.scope'])
  })

  it('npx oomlab reproduce 02-: the article\'s spec from what the package ships', { timeout: 300_000 * T }, async () => {
    const r = await execa('npx', ['oomlab', 'reproduce', '02-'], { cwd: user, reject: false, all: true })
    expect(r.exitCode, r.all).toBe(0)
    expect(r.all).toMatch(/oomlab: 1 passed, 0 failed/)
    expect((await evidenceOf('02-leaf-oom-group-1')).verdict.state).toBe('pass')
  })
})
