/**
 * `oomlab doctor`'s lines for the container runtimes natively: a PATH without them fails each, naming
 * the specs that need it and the package to install.
 */
import { describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runtimeChecks } from '../../../src/cli/doctor.js'

describe('doctor: the container runtimes natively', () => {
  it('fails each runtime PATH lacks, with the specs that need it and its package', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oomlab-doctor-'))
    const path = process.env.PATH
    try {
      process.env.PATH = dir
      const checks = await runtimeChecks()
      expect(checks.map((c) => [c.name, c.ok])).toEqual([['runc', false], ['crun', false], ['conmon', false], ['lxc-execute', false]])
      expect(checks[1]).toMatchObject({ detail: expect.stringContaining('specs 20-23'), fix: expect.stringContaining('apt-get install crun') })
      expect(checks[3]).toMatchObject({ detail: expect.stringContaining('spec 24'), fix: expect.stringContaining('apt-get install lxc') })
    } finally {
      process.env.PATH = path
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
