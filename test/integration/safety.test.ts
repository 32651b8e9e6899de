// The native path's safety rules: nothing is created outside the cgroup2 mount, nor as root's workload.
import { describe, it, expect } from 'vitest'
import { readdirSync } from 'node:fs'
import { Lab, workloadUser } from '../../src/experiment/lab.js'
import { LocalOs } from '../../src/os/local.js'
import { cgMountPoint } from '../../src/cgroup/cgroupfs.js'
import { UserError } from '../../src/util/errors.js'

const mount = cgMountPoint()
const why = !mount ? 'no cgroup2 mount on this host' : process.getuid?.() !== 0 ? 'Lab.open refuses non-root first' : ''

describe.skipIf(why !== '')(`the cgroup parent${why ? ` (skipped: ${why})` : ''}`, () => {
  const before = readdirSync(mount ?? '/')
  it.each([
    ['/tmp', 'outside'],
    [`${mount}/../memory`, '".." is not allowed'],
    ['relative/cg', 'absolute path'],
    [`${mount}/no-such-cgroup`, 'no such cgroup'],
  ])('refuses %s in one line and creates nothing', async (parent, word) => {
    await using os = new LocalOs()
    const err = await Lab.open('safety', { os, cgroupParent: parent }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UserError)
    expect((err as Error).message).toContain(word)
    expect((err as Error).message).not.toContain('\n')
    expect(readdirSync(mount!)).toEqual(before)
  })
})

describe('the workload user', () => {
  it('is uid 1000 by default and never root', () => {
    expect(workloadUser({})).toEqual({ uid: 1000, gid: 1000 })
    expect(workloadUser({ OOMLAB_UID: '1001', OOMLAB_GID: '100' })).toEqual({ uid: 1001, gid: 100 })
    for (const bad of ['0', '-1', 'root', '1.5'])
      expect(() => workloadUser({ OOMLAB_UID: bad })).toThrow(/OOMLAB_UID\/OOMLAB_GID must name an unprivileged user/)
  })
})
