/**
 * The npm package, the way a user meets it: `npm pack`, installed into an empty folder. What every machine
 * can check: the manifest is publishable, the tarball holds what the CLI and the guest image builder read
 * at run time (and no sources or tests), and the installed `oomlab` answers `--help` and `doctor`. Where a
 * lab guest can run: a spec of one's own (the README's container-runtime example) through `npx oomlab
 * reproduce` and through plain `npx vitest`, and one of the article's specs from what the package ships,
 * each leaving its evidence in the user's folder.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execa } from 'execa'
import { copyFile, readFile, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise'
import { packageRoot } from '../../src/util/paths.js'
import { labGuestSkipReason } from '../helpers/lab-guest.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'
import type { Evidence } from '../../src/report/evidence.js'

const T = timeoutScale()
const why = labGuestSkipReason()

let work: DirectoryResult
/** The user's folder: an empty npm project with the packed tarball installed. */
let user: string
/** The tarball's paths, as `npm pack` lists them. */
let packed: string[]

beforeAll(async () => {
  work = await tmpDir({ prefix: 'oomlab-package-', unsafeCleanup: true })
  const pack = await execa('npm', ['pack', '--json', '--pack-destination', work.path], { cwd: packageRoot })
  const [{ filename, files }] = JSON.parse(pack.stdout) as [{ filename: string; files: { path: string }[] }]
  packed = files.map((f) => f.path)
  user = join(work.path, 'user')
  await execa('mkdir', [user])
  await execa('npm', ['init', '-y'], { cwd: user })
  await execa('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work.path, filename)], { cwd: user })
  await copyFile(join(packageRoot, 'examples/container-runtime.spec.ts'), join(user, 'my-layout.spec.ts'))
}, 300_000 * T)

afterAll(async () => {
  await work?.cleanup()
})

describe('the packed package', () => {
  it('is publishable: not private, with its licence, repository, bin and files named', async () => {
    const manifest = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as Record<string, unknown>
    expect(manifest.private).toBeUndefined()
    expect(manifest).toMatchObject({ name: 'oom-group-lab', license: 'MIT', bin: { oomlab: 'bin/oomlab.mjs' }, repository: { type: 'git' } })
    expect((manifest.repository as { url: string }).url).toMatch(/^git\+https:\/\/\S+\.git$/)
    expect(manifest.files).toEqual(expect.arrayContaining(['bin/', 'dist/']))
  })

  it('holds what the CLI and the guest image builder read at run time, and no sources, tests or fixtures', () => {
    expect(packed).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'bin/oomlab.mjs',
        'scripts/setup.sh',
        'dist/src/cli/main.js',
        'dist/src/index.js',
        'dist/src/index.d.ts',
        'dist/src/vitest/reporter.js',
        'dist/vitest.config.js',
        // The guest image: its /init, the bench's shell baseline, the agent bundled from its compiled copy; the
        // guest kernel's config fragment (oomlab kernel build).
        'dist/src/vm/in-guest/init.sh',
        'dist/src/kernel/build/guest.config',
        'dist/src/vm/in-guest/agent.js',
        'dist/experiments/article.sh',
      ]),
    )
    expect(packed.filter((p) => /^dist\/experiments\/\d\d-[\w-]+\.spec\.js$/.test(p))).toHaveLength(13)
    expect(packed.filter((p) => /^(src|test|experiments|examples)\//.test(p))).toEqual([])
    expect(packed.filter((p) => /\.spec\.d\.ts$|\.tgz$/.test(p))).toEqual([])
  })

  it('npx oomlab --help and npx oomlab doctor answer from the installed copy', { timeout: 60_000 * T }, async () => {
    const help = await execa('npx', ['oomlab', '--help'], { cwd: user, reject: false, all: true })
    expect(help.exitCode, help.all).toBe(0)
    expect(help.stdout).toMatch(/^oomlab \d+\.\d+\.\d+: reproduces/)
    expect(help.stdout).toMatch(/^usage: oomlab <command>/m)
    // 0 when the experiments can run here (natively or in guests), 1 when neither way can; either way one verdict line.
    const doctor = await execa('npx', ['oomlab', 'doctor'], { cwd: user, reject: false, all: true })
    expect([0, 1], doctor.all).toContain(doctor.exitCode)
    expect(doctor.stdout).toMatch(/^ {2}(ok|FAIL) +kernel: Linux /m)
    expect(doctor.stdout).toMatch(/^(`npm test` runs the experiments (natively|in QEMU guests) here|Neither way can run here)/m)
  })
})

describe.skipIf(why !== '')(`the npm package in a lab guest${why ? ` (skipped: ${why})` : ''}`, () => {
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
    // Plain vitest's runs go to reports/vitest (the CLI's each to a folder of its own).
    const e = await evidenceOf('my-layout', 'vitest')
    expect(e.verdict.state).toBe('pass')
    expect(e.processes.filter((p) => p.fate === 'survived').map((p) => p.cgroup)).toEqual(['runtime.slice/db.scope', 'runtime.slice/db.scope'])
  })

  it('npx oomlab test 02-: the article\'s spec from what the package ships, no unit tests it does not ship', { timeout: 300_000 * T }, async () => {
    const r = await execa('npx', ['oomlab', 'test', '02-'], { cwd: user, reject: false, all: true })
    expect(r.exitCode, r.all).toBe(0)
    expect(r.all).toMatch(/unit tests: not in the installed package \(they ship with the repository\); running the experiments/)
    expect(r.all).toMatch(/oomlab: 1 passed, 0 failed$/)
    expect((await evidenceOf('02-leaf-oom-group-1')).verdict.state).toBe('pass')
  })
})
