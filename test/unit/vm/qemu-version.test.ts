/**
 * QEMU's version line is asked once per binary and remembered in the cache by its path, size and time
 * (src/vm/qemu/version.ts): a stand-in binary here counts how often it is asked.
 */
import { describe, it, expect } from 'vitest'
import { chmodSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dir } from 'tmp-promise'
import { qemuBuild } from '../../../src/vm/qemu/version.js'

/** A binary that prints a version line and counts its runs in a file beside it. */
function standIn(folder: string, version: string): { path: string; runs: () => number } {
  const path = join(folder, 'qemu-system-x86_64')
  const count = join(folder, 'runs')
  writeFileSync(count, '')
  writeFileSync(path, `#!/bin/sh\necho x >> ${count}\necho "QEMU emulator version ${version}"\necho "Copyright (c) 2003-2022"\n`)
  chmodSync(path, 0o755)
  return { path, runs: () => readFileSync(count, 'utf8').split('\n').filter(Boolean).length }
}

describe('QEMU version', () => {
  it('is asked of a binary once, then read from the cache until the binary changes', async () => {
    const d = await dir({ unsafeCleanup: true })
    try {
      const q = standIn(d.path, '7.2.22')
      const cache = join(d.path, 'cache')
      expect((await qemuBuild(q.path, cache)).version).toBe('QEMU emulator version 7.2.22')
      expect(q.runs()).toBe(1)
      // Another process (here: another cache key in this one) reads it back without running QEMU.
      expect((await qemuBuild(q.path, `${cache}/`)).version).toBe('QEMU emulator version 7.2.22')
      expect(q.runs()).toBe(1)
      // An upgrade: another binary, another time.
      writeFileSync(q.path, readFileSync(q.path, 'utf8').replace('7.2.22', '8.0.0'))
      utimesSync(q.path, new Date(), new Date(Date.now() + 5000))
      expect((await qemuBuild(q.path, `${cache}//`)).version).toBe('QEMU emulator version 8.0.0')
      expect(q.runs()).toBe(2)
    } finally {
      await d.cleanup()
    }
  })

  it('says so when the binary cannot tell', async () => {
    const d = await dir({ unsafeCleanup: true })
    try {
      const path = join(d.path, 'broken')
      writeFileSync(path, '#!/bin/sh\necho "error while loading shared libraries" >&2\nexit 127\n')
      chmodSync(path, 0o755)
      await expect(qemuBuild(path, d.path)).rejects.toThrow(/--version failed: error while loading shared libraries/)
    } finally {
      await d.cleanup()
    }
  })
})
