// Bad input: one line, exit code 2, nothing started.
import { resolve } from 'node:path'
import { describe, it, expect } from 'vitest'
import { parseRunArgs } from '../src/cli/args.js'
import { UserError } from '../src/util/errors.js'

const fails = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  try {
    parseRunArgs(argv, env)
  } catch (err) {
    expect(err).toBeInstanceOf(UserError)
    expect((err as UserError).exitCode).toBe(2)
    expect((err as Error).message).not.toContain('\n')
    return (err as Error).message
  }
  throw new Error(`accepted ${argv.join(' ')}`)
}

describe('run options', () => {
  it('rejects unknown flags and bad values in one line', () => {
    expect(fails(['--bogus'])).toBe("Unknown option '--bogus' (see --help)")
    expect(fails(['--accel', 'hvf'])).toBe('--accel "hvf": expected auto, kvm or tcg')
    expect(fails(['--memory', '12x'])).toBe('--memory "12x": expected a whole number from 512 to 65536')
    expect(fails(['--memory', '128'])).toMatch(/from 512/)
    expect(fails(['--cpus', '0'])).toMatch(/from 1 to 64/)
    expect(fails(['--boot-timeout', '-5'])).toMatch(/boot-timeout/)
    expect(fails(['--kernel', 'buster'])).toMatch(/^unknown kernel "buster": give a Debian suite \(bullseye, bookworm/)
    expect(fails(['--kernel-image', '/nonexistent/bzImage'])).toBe('--kernel-image /nonexistent/bzImage: no such file')
    expect(fails(['--vm', '--native'])).toBe('--vm and --native exclude each other')
    expect(fails(['--native'], { OOMLAB_VM: '1' })).toBe('--vm and --native exclude each other')
    expect(fails(['../etc'])).toMatch(/etc: a spec of one's own is a file named \*\.spec\.ts/)
    expect(fails(['a b'])).toMatch(/^spec filter "a b"/)
  })

  it('takes a path to a spec file as a spec of one\'s own, anything else as a filter of the article\'s', () => {
    expect(parseRunArgs(['./examples/container-runtime.spec.ts'], {})).toMatchObject({ specs: [resolve('examples/container-runtime.spec.ts')], filters: [] })
    expect(parseRunArgs(['02-leaf', '01-leaf-oom-group-0.spec.ts'], {})).toMatchObject({ specs: [], filters: ['02-leaf', '01-leaf-oom-group-0.spec.ts'] })
  })

  it('turns a kernel choice into a VM run, and OOMLAB_VM forces one', () => {
    expect(parseRunArgs([], {}).vm).toBe(false)
    expect(parseRunArgs(['--kernel', 'sid'], {}).vm).toBe(true)
    expect(parseRunArgs([], { OOMLAB_VM: '1' }).vm).toBe(true)
    expect(parseRunArgs(['--append', 'panic=5 foo'], {})).toMatchObject({ vm: true, append: ['panic=5', 'foo'] })
    expect(parseRunArgs(['--timeout', '90', '02-leaf'], {})).toMatchObject({ runTimeoutMs: 90_000, filters: ['02-leaf'] })
  })
})
