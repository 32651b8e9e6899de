// From flags and variables to the run's configuration: what each asks for, and one line for each mistake.
import { resolve } from 'node:path'
import { describe, it, expect } from 'vitest'
import { parseFlags } from '../../../src/cli/flags.js'
import { COMMANDS } from '../../../src/cli/commands.js'
import { reproduceRequest, matrixRequest, MATRIX_DEFAULT } from '../../../src/cli/args.js'
import { coresToSpare, resolveRun, selectSpecs } from '../../../src/run/resolve.js'
import type { GuestMachine } from '../../../src/run/config.js'
import { UserError } from '../../../src/util/errors.js'

const quiet = () => undefined
const reproduce = (argv: string[], env: NodeJS.ProcessEnv = {}) => resolveRun(reproduceRequest(parseFlags(COMMANDS.reproduce!, argv)), env, quiet)
const matrix = (argv: string[], env: NodeJS.ProcessEnv = {}) => resolveRun(matrixRequest(parseFlags(COMMANDS.matrix!, argv)), env, quiet)

async function fails(run: Promise<unknown>): Promise<string> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(UserError)
  expect((err as UserError).exitCode).toBe(2)
  expect((err as Error).message).not.toContain('\n')
  return (err as Error).message
}

describe('run options', () => {
  it('rejects bad values in one line', async () => {
    expect(await fails(reproduce(['--accel', 'hvf']))).toBe('--accel "hvf": expected auto, kvm or tcg')
    expect(() => reproduceRequest(parseFlags(COMMANDS.reproduce!, ['--memory', '12x']))).toThrow('--memory "12x": expected a whole number from 512 to 65536')
    expect(await fails(reproduce(['--kernel', 'buster']))).toMatch(/^unknown kernel "buster": give a Debian suite \(bullseye, bookworm/)
    expect(await fails(reproduce(['--kernel-image', '/nonexistent/bzImage']))).toBe('--kernel-image /nonexistent/bzImage: no such file')
    expect(await fails(reproduce(['--vm', '--native']))).toBe('--vm and --native exclude each other')
    expect(await fails(reproduce(['--native'], { OOMLAB_VM: '1' }))).toMatch(/^--native runs on the host kernel/)
    expect(await fails(reproduce(['../etc']))).toMatch(/etc: a spec of one's own is a file named \*\.spec\.ts/)
    expect(await fails(reproduce(['a b']))).toMatch(/^spec filter "a b"/)
    expect(await fails(reproduce([], { OOMLAB_JOBS: 'abc' }))).toBe('OOMLAB_JOBS="abc": expected a whole number from 1 to 64')
  })

  it('selects spec files before anything runs: selecting none is a usage error naming the specs there are', () => {
    expect(selectSpecs(['02-leaf'], []).map((p) => p.replace(/^.*\//, ''))).toEqual(['02-leaf-oom-group-1.spec.ts'])
    expect(selectSpecs([], []).length).toBeGreaterThanOrEqual(8)
    expect(() => selectSpecs(['nosuchspec'], [])).toThrow(/^spec filter "nosuchspec" selects none of the \d+ specs \(01-leaf-oom-group-0, 02-leaf-oom-group-1, /)
  })

  it("takes a path to a spec file as a spec of one's own, anything else as a filter of the article's", async () => {
    expect((await reproduce(['--vm', './examples/container-runtime.spec.ts'])).specs).toEqual([resolve('examples/container-runtime.spec.ts')])
    expect((await reproduce(['--vm', '02-leaf', '01-leaf-oom-group-0.spec.ts'])).specs.map((p) => p.replace(/^.*\//, ''))).toEqual(['01-leaf-oom-group-0.spec.ts', '02-leaf-oom-group-1.spec.ts'])
  })

  it('turns a kernel choice into a guest run, and OOMLAB_VM forces one; flags win over variables', async () => {
    expect((await reproduce(['--kernel', 'sid'])).machine.kind).toBe('guest')
    expect(await reproduce([], { OOMLAB_VM: '1' })).toMatchObject({ machine: { kind: 'guest' }, kernels: [{ name: 'bookworm' }] })
    expect((await reproduce(['--append', 'panic=5 foo'])).machine).toMatchObject({ kind: 'guest', append: ['panic=5', 'foo'] })
    expect(await reproduce(['--vm', '--timeout', '90', '--jobs', '3', '02-leaf'], { OOMLAB_JOBS: '1' })).toMatchObject({ runTimeoutMs: 90_000, jobs: 3 })
    expect((await reproduce(['--vm'], { OOMLAB_KERNEL: 'trixie' })).kernels).toEqual([{ name: 'trixie' }])
    expect((await reproduce(['--kernel', 'sid'], { OOMLAB_KERNEL: 'trixie' })).kernels).toEqual([{ name: 'sid' }])
  })

  it('restores guests ahead where cores are to spare, or as OOMLAB_RESTORE_AHEAD says; never for a matrix', async () => {
    // The CLI and each of vitest's workers keep a core busy while vitest starts.
    expect([coresToSpare(2, 2), coresToSpare(2, 3), coresToSpare(2, 4), coresToSpare(3, 4), coresToSpare(1, 2)]).toEqual([false, false, true, false, false])
    const ahead = async (argv: string[], env: NodeJS.ProcessEnv = {}) => ((await reproduce(argv, env)).machine as GuestMachine).restoreAhead
    expect(await ahead(['--vm', '--jobs', '2', '01-', '02-', '03-'])).toBe(coresToSpare(2))
    expect(await ahead(['--vm', '--jobs', '2'], { OOMLAB_RESTORE_AHEAD: '1' })).toBe(true)
    expect(await ahead(['--vm'], { OOMLAB_RESTORE_AHEAD: '0' })).toBe(false)
    expect(await fails(reproduce(['--vm'], { OOMLAB_RESTORE_AHEAD: 'maybe' }))).toBe('OOMLAB_RESTORE_AHEAD="maybe": expected 1 or 0')
    expect(((await matrix([], { OOMLAB_RESTORE_AHEAD: '1' })).machine as GuestMachine).restoreAhead).toBeUndefined()
  })

  it('gives each run a folder of its own under reports/runs unless --report names one', async () => {
    const a = await reproduce(['--vm'])
    expect(a.report).toBe(resolve('reports/runs', a.id))
    expect((await reproduce(['--vm', '--report', 'out/x'])).report).toBe(resolve('out/x'))
  })

  it('runs a matrix on the default kernels, or those named, plus images', async () => {
    expect((await matrix([])).kernels.map((k) => k.name)).toEqual(MATRIX_DEFAULT)
    expect((await matrix(['sid', '--kernel-image', 'package.json'])).kernels).toEqual([{ name: 'sid' }, { name: resolve('package.json'), image: resolve('package.json') }])
  })

  it('takes a cell KERNEL+OPTION as that kernel with cgroup2 mounted with the option; a Debian version keeps its +', async () => {
    expect(MATRIX_DEFAULT).toContain('bookworm+memory_localevents')
    expect((await matrix([])).kernels.find((k) => k.name === 'bookworm+memory_localevents')).toEqual({
      name: 'bookworm+memory_localevents',
      kernel: 'bookworm',
      append: ['oomlab.cgroup2=memory_localevents'],
    })
    expect((await reproduce(['--kernel', 'sid+memory_localevents+memory_recursiveprot'])).kernels).toEqual([
      { name: 'sid+memory_localevents+memory_recursiveprot', kernel: 'sid', append: ['oomlab.cgroup2=memory_localevents,memory_recursiveprot'] },
    ])
    expect((await reproduce(['--kernel', '6.12.48+deb13'])).kernels).toEqual([{ name: '6.12.48+deb13' }])
    expect(await fails(reproduce(['--kernel', 'buster+memory_localevents']))).toMatch(/^unknown kernel "buster"/)
  })

  it('takes a source tree or its tarball with --kernel-src, checked before anything runs', async () => {
    expect(await fails(reproduce(['--kernel-src', '/nonexistent/linux']))).toBe('--kernel-src /nonexistent/linux: no such file or folder; give a Linux source tree or its tarball (.tar.xz)')
    expect(await fails(reproduce(['--kernel-src', 'package.json']))).toBe(`--kernel-src ${resolve('package.json')}: a file that is not a tarball (.tar.xz, .tar.gz, ...); give a Linux source tree or its tarball`)
    expect(await fails(reproduce(['--kernel-src', 'src']))).toBe(`${resolve('src')} is not a Linux source tree (its top Makefile has no VERSION and PATCHLEVEL)`)
    expect(() => reproduceRequest(parseFlags(COMMANDS.reproduce!, ['--kernel', 'sid', '--kernel-src', '.']))).toThrow('--kernel, --kernel-image and --kernel-src exclude each other')
  })
})
