/**
 * Bad input, the way a user meets it: the real CLI, every command and flag given a wrong value.
 * Each must end with one line on stderr and exit code 2, before anything is created: no cache,
 * no temp dir, no report, no cgroup.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { cgMountPoint } from '../../../src/cgroup/cgroupfs.js'
import { projectRoot } from '../../../src/util/paths.js'
import { COMMANDS } from '../../../src/cli/commands.js'
import { timeoutScale } from '../../../src/util/timeout-scale.js'
import { oomlab } from '../../helpers/oomlab.js'

// Without a cgroup2 mount the cgroup-root cases meet another (also one-line) refusal first.
const mount = cgMountPoint() ?? '/sys/fs/cgroup'
const CASES: [string[], RegExp, Record<string, string>?][] = [
  [['frobnicate'], /^unknown command "frobnicate"/],
  [['reproduce', '--bogus'], /^reproduce: Unknown option '--bogus' \(see oomlab reproduce --help\)$/],
  [['reproduce', '--accel', 'hvf'], /^--accel "hvf": expected auto, kvm or tcg$/],
  [['reproduce', '--memory', 'lots'], /^--memory "lots": expected a whole number from 512 to 65536$/],
  [['reproduce', '--memory', '99999999'], /^--memory "99999999"/],
  [['reproduce', '--cpus', '0'], /^--cpus "0"/],
  [['reproduce', '--boot-timeout', '0'], /^--boot-timeout "0"/],
  [['reproduce', '--timeout', '1h'], /^--timeout "1h"/],
  [['reproduce', '--kernel', 'buster'], /^unknown kernel "buster"/],
  [['reproduce', '--kernel-image', '/nonexistent/bzImage'], /^\/nonexistent\/bzImage does not exist: give the path of a kernel image/],
  [['reproduce', '--kernel-image', 'package.json'], /package\.json .*kernel/],
  [['reproduce', '--vm', '--native'], /^--vm and --native exclude each other$/],
  [['reproduce', '--native', '--kernel', 'sid'], /drop --kernel/],
  [['reproduce', '--cgroup-root', 'relative/cg'], /give an absolute path/],
  [['reproduce', '--cgroup-root', `${mount}/a/../b`], /"\.\." is not allowed/],
  [['reproduce', '--cgroup-root', '/tmp'], /outside the cgroup2 mount/],
  [['reproduce', '--cgroup-root', `${mount}/oomlab-no-such-cgroup`], /no such cgroup/],
  [['reproduce', '--cgroup-root', `${mount}`, '--vm'], /^--cgroup-root \(OOMLAB_CGROUP_PARENT\) is for native runs/],
  [['reproduce', '../etc'], /\/etc: a spec of one's own is a file named \*\.spec\.ts/],
  [['reproduce', 'a;b'], /^spec filter "a;b"/],
  [['reproduce', './no-such.spec.ts'], /no-such\.spec\.ts: no such spec file$/],
  [['reproduce', './examples/container-runtime.spec.ts', '02-'], /^name spec files or filters of the article's specs, not both/],
  [['test', '--memory', '1'], /^--memory "1"/],
  [['reproduce'], /^OOMLAB_TIMEOUT_SCALE="fast"/, { OOMLAB_TIMEOUT_SCALE: 'fast' }],
  [['reproduce'], /^OOMLAB_UID\/OOMLAB_GID must name an unprivileged user/, { OOMLAB_UID: '0' }],
  [['matrix', '--jobs', '0'], /^--jobs "0"/],
  [['cache', 'key'], /^usage: oomlab cache key --kernel NAME$/],
  [['cache', 'key', '--kernel', 'buster'], /^unknown kernel "buster"/],
  [['cache', 'bogus'], /^cache: unexpected "bogus" \(see oomlab cache --help\)$/],
  [['cache'], /^OOMLAB_CACHE_LIMIT="lots": expected a size such as 4G, 500M or 0 \(no limit\)$/, { OOMLAB_CACHE_LIMIT: 'lots' }],
  [['soak', '--others', 'x'], /^--others "x": expected a whole number from 0 to 5000$/],
  [['soak', '--boot-cpus', '0'], /^--boot-cpus "0": expected a whole number from 1 to 8$/],
  [['matrix', '--jobs', 'many'], /^--jobs "many"/],
  [['matrix', 'etch'], /^unknown kernel "etch"/],
  [['matrix', '--spec', '../x'], /^spec filter "\.\.\/x"/],
  [['matrix', '--accel', 'xen'], /^--accel "xen"/],
  [['matrix', '--kernel-image', 'README.md'], /README\.md .*kernel/],
  [['matrix', '--bogus'], /^matrix: Unknown option '--bogus'/],
  [['bench', '--runs', '0'], /^--runs "0"/],
  [['bench', '--runs', 'x'], /^--runs "x"/],
  [['bench', '--kernel', 'potato'], /^unknown kernel "potato"/],
  [['bench', '--accel', 'hax'], /^--accel "hax"/],
  [['reproduce'], /^cgroup root \/tmp is outside the cgroup2 mount/, { OOMLAB_CGROUP_PARENT: '/tmp' }],
  [['soak', '--runs', 'lots'], /^--runs "lots"/],
  [['soak', '--kernel', 'hamm'], /^unknown kernel "hamm"/],
  [['soak', '--bogus'], /^soak: Unknown option '--bogus'/],
  [['kernel'], /^usage: oomlab kernel build DIR\|TARBALL \(see oomlab kernel --help\)$/],
  [['kernel', 'build'], /^usage: oomlab kernel build DIR\|TARBALL/],
  [['kernel', 'build', '/nonexistent/linux'], /^--kernel-src \/nonexistent\/linux: no such file or folder; give a Linux source tree or its tarball/],
  [['kernel', 'build', 'src'], /src is not a Linux source tree \(its top Makefile has no VERSION and PATCHLEVEL\)$/],
  [['kernel', 'build', '.', '--jobs', 'all'], /^--jobs "all": expected a whole number from 1 to 256$/],
  [['reproduce', '--kernel-src', '/nonexistent/linux'], /^--kernel-src \/nonexistent\/linux: no such file or folder/],
  [['reproduce', '--kernel', 'sid', '--kernel-src', '.'], /^--kernel, --kernel-image and --kernel-src exclude each other$/],
  [['matrix', '--kernel-src', 'package.json'], /package\.json: a file that is not a tarball/],
  [['kernels', '--all'], /^kernels: Unknown option '--all'/],
  [['kernels', 'all'], /^kernels takes no arguments/],
  [['doctor', 'now'], /^doctor takes no arguments/],
  // Selecting nothing, and every malformed option or variable, before anything runs.
  [['reproduce', 'zzz-nomatch'], /^spec filter "zzz-nomatch" selects none of the \d+ specs \(01-leaf-oom-group-0, /],
  [['matrix', '--spec', 'nosuchspec', 'bookworm'], /^spec filter "nosuchspec" selects none of the \d+ specs/],
  [['matrix', '--spec', 'zzz'], /^spec filter "zzz" selects none/],
  [['reproduce', '--jobs', '0'], /^--jobs "0": expected a whole number from 1 to 64$/],
  [['reproduce'], /^OOMLAB_JOBS="abc": expected a whole number from 1 to 64$/, { OOMLAB_JOBS: 'abc' }],
  [['reproduce'], /^OOMLAB_JOBS="-1": expected a whole number/, { OOMLAB_JOBS: '-1' }],
  [['reproduce'], /^OOMLAB_VM="maybe": expected 1 or 0$/, { OOMLAB_VM: 'maybe' }],
  [['reproduce'], /^OOMLAB_MEMORY="lots"/, { OOMLAB_MEMORY: 'lots' }],
  [['reproduce', '--vm'], /^OOMLAB_ACCEL="xen": expected auto, kvm or tcg$/, { OOMLAB_ACCEL: 'xen' }],
  [['reproduce', '--report', ''], /^--report "": name a folder for the report$/],
  [['reproduce', '--report', '/'], /^--report \/: not the filesystem root/],
  [['reproduce', '--report', 'README.md'], /^--report README\.md: it is not a folder/],
  [['reproduce', '--report', '.'], /^--report \.: not the project folder itself/],
  [['matrix', '--report', 'src'], /^--report src: it holds files not made by oomlab/],
]

describe('bad input to the CLI', () => {
  let dir: string
  let cgroupsBefore: string[]
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'oomlab-badinput-'))
    for (const d of ['cache', 'tmp']) mkdirSync(join(dir, d))
    cgroupsBefore = existsSync(mount) ? readdirSync(mount) : []
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  // The context's signal stops a CLI run whose test timed out, so it does not load the machine further.
  it.concurrent.for(CASES)('oomlab %j: one line, exit 2', { timeout: 60_000 * timeoutScale() }, async ([argv, message, env = {}], { signal, expect }) => {
    const report = join(dir, `report-${CASES.findIndex((c) => c[0] === argv)}`)
    const withReport = ['reproduce', 'test'].includes(argv[0]!) && !argv.includes('--report') ? [...argv, '--report', report] : argv
    const r = await oomlab(withReport, { cwd: projectRoot, env: { ...env, OOMLAB_CACHE_DIR: join(dir, 'cache'), TMPDIR: join(dir, 'tmp') }, signal })
    const stderr = r.stderr
    expect(r.exitCode, stderr).toBe(2)
    expect(stderr.split('\n')).toHaveLength(1)
    expect(stderr.replace(/^oomlab: /, '')).toMatch(message)
    expect(r.stdout).toBe('')
    expect(readdirSync(join(dir, 'cache'))).toEqual([])
    // tsx-N is the TypeScript loader's own compile cache, kept across runs by design.
    expect(readdirSync(join(dir, 'tmp')).filter((f) => !/^tsx-\d+$/.test(f))).toEqual([])
    expect(existsSync(report)).toBe(false)
    if (existsSync(mount)) expect(readdirSync(mount)).toEqual(cgroupsBefore)
  })
})

describe('a folder of ones own given as --report', () => {
  it('is refused in one line and left untouched', async () => {
    const mine = mkdtempSync(join(tmpdir(), 'oomlab-mine-'))
    try {
      const files = ['evidence/mydata.json', 'figures/diagram.svg', 'summary.txt']
      for (const f of files) {
        mkdirSync(join(mine, f, '..'), { recursive: true })
        writeFileSync(join(mine, f), `mine: ${f}`)
      }
      const r = await oomlab(['reproduce', '02-', '--report', mine], { cwd: projectRoot })
      expect(r.exitCode).toBe(2)
      expect(r.stderr).toMatch(/^oomlab: --report .*: it holds files not made by oomlab \(evidence, figures, summary\.txt\); name an empty or new folder, or one an earlier oomlab run made$/)
      for (const f of files) expect(readFileSync(join(mine, f), 'utf8')).toBe(`mine: ${f}`)
      expect(readdirSync(mine, { recursive: true }).map(String).sort()).toEqual(['evidence', 'evidence/mydata.json', 'figures', 'figures/diagram.svg', 'summary.txt'])
    } finally {
      rmSync(mine, { recursive: true, force: true })
    }
  })
})

describe('help', () => {
  it.for([...Object.keys(COMMANDS)])('oomlab %s --help: its usage, flags, variables and exit codes', async (cmd) => {
    const r = await oomlab([cmd, '--help'])
    expect(r.exitCode, r.stderr).toBe(0)
    const out = r.stdout
    expect(out).toMatch(new RegExp(`^usage: oomlab ${cmd}\\b`))
    expect(out).toContain('exit codes:')
    for (const flag of Object.keys(COMMANDS[cmd]!.flags)) expect(out).toContain(`--${flag}`)
  })

  it('oomlab --version and oomlab --help', async () => {
    const v = await oomlab(['--version'])
    expect(v.stdout).toBe((JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version)
    const h = await oomlab(['--help'])
    for (const cmd of Object.keys(COMMANDS)) expect(h.stdout).toContain(`  ${cmd}`)
    expect(h.stdout).toMatch(/exit codes: 0 success; 1 .*; 2 .*; 3 .*; 130 interrupted/)
  })
})

describe('oomlab soak with its default kernels', () => {
  // Every default kernel is parsed before anything runs; the matrix's cells (KERNEL+OPTION) are left out, not refused.
  it('accepts them: with nothing to run it ends with 0 of 0 checks', async () => {
    const r = await oomlab(['soak', '--runs', '0', '--others', '0', '--boots', '0', '--skip-faults'])
    expect(r.exitCode, r.all).toBe(0)
    expect(r.stdout).toMatch(/oomlab soak: 0 of 0 checks passed/)
  })
})
