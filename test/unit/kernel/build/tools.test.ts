/** The build's tool check, against this host's real programs and headers: a PATH without some is named in one line. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkBuildTools, missingToolsLine, INCLUDE_DIRS } from '../../../../src/kernel/build/tools.js'
import { which } from '../../../../src/util/which.js'

// Whether this host has it all, asked without the code under test.
const lacking = [
  ...['gcc', 'make', 'flex', 'bison', 'bc', 'tar', 'xz'].filter((p) => !which(p)),
  ...['gelf.h', 'libelf.h', 'openssl/opensslv.h'].filter((h) => !INCLUDE_DIRS.some((d) => existsSync(join(d, h)))),
]
const skip = lacking.length > 0 ? `skipped: this host lacks ${lacking.join(', ')}` : ''

describe.skipIf(skip)(`the tools a kernel build needs ${skip}`, () => {
  let bin: string
  beforeAll(() => {
    // A PATH holding this host's gcc, make and bc only.
    bin = mkdtempSync(join(tmpdir(), 'oomlab-tools-'))
    for (const p of ['gcc', 'make', 'bc']) symlinkSync(which(p)!, join(bin, p))
  })
  afterAll(() => rmSync(bin, { recursive: true, force: true }))

  it('finds nothing missing on this host', () => {
    expect(missingToolsLine(checkBuildTools({ tarball: true }))).toBeUndefined()
  })

  it('names every missing program and header in one line, with the packages', () => {
    const c = checkBuildTools({ path: bin, includeDirs: ['/nonexistent'], tarball: true })
    expect(c.missing).toEqual(['flex', 'bison', 'libelf headers', 'libssl headers', 'tar', 'xz'])
    expect(missingToolsLine(c)).toBe('cannot build a kernel here: flex, bison, libelf headers, libssl headers, tar, xz missing; install with `apt-get install flex bison libelf-dev libssl-dev tar xz-utils`')
  })

  it('finds the headers where Debian puts them', () => {
    expect(checkBuildTools({ path: bin, includeDirs: INCLUDE_DIRS }).missing).toEqual(['flex', 'bison'])
  })
})
