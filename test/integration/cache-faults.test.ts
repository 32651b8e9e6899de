/**
 * The cache under faults: a guest image cut short or damaged is found out and built again; a full
 * disk and an unreachable mirror end in one line saying so.
 */
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { mkdtempSync, rmSync, truncateSync, statSync, openSync, writeSync, closeSync, readdirSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { execa } from 'execa'
import { ImageTree } from '../../src/vm/image/tree.js'
import { buildInitramfs, checkImage } from '../../src/vm/image/store.js'
import { UserError } from '../../src/util/errors.js'
import { resolveKernel } from '../../src/kernel/resolve.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'

function smallTree(): ImageTree {
  const t = new ImageTree()
  t.data('/init', '#!/bin/sh\necho hello\n', 0o755)
  t.data('/etc/big', Buffer.alloc(256 * 1024, 7))
  return t
}

describe('the initramfs cache', () => {
  let cache: string
  beforeEach(() => void (cache = mkdtempSync(join(tmpdir(), 'oomlab-cachetest-'))))
  afterEach(() => rmSync(cache, { recursive: true, force: true }))

  it('reuses a whole image, and rebuilds one cut short or damaged', async () => {
    const first = await buildInitramfs(cache, smallTree())
    expect(first.reused).toBe(false)
    expect(await checkImage(first.path)).toBeUndefined()
    expect((await buildInitramfs(cache, smallTree())).reused).toBe(true)

    truncateSync(first.path, statSync(first.path).size - 100)
    expect(await checkImage(first.path)).toMatch(/bytes, \d+ expected \(cut short\?\)/)
    const afterCut = await buildInitramfs(cache, smallTree())
    expect(afterCut).toMatchObject({ reused: false, rebuiltBecause: expect.stringMatching(/cut short/) })
    expect(await checkImage(afterCut.path)).toBeUndefined()

    const fd = openSync(first.path, 'r+')
    writeSync(fd, Buffer.from('garbage'), 0, 7, 4096)
    closeSync(fd)
    expect(await buildInitramfs(cache, smallTree())).toMatchObject({ reused: false, rebuiltBecause: expect.stringMatching(/does not match its sha256/) })
    expect((await buildInitramfs(cache, smallTree())).reused).toBe(true)
  })

  const root = process.getuid?.() === 0
  it.skipIf(!root)(`says so in one line when the disk is full, and leaves no partial file${root ? '' : ' (skipped: mounting a small tmpfs needs root)'}`, async () => {
    const small = join(cache, 'small')
    mkdirSync(small)
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'oomlab-test', small])
    try {
      const err = await buildInitramfs(small, smallTree()).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(UserError)
      expect((err as Error).message).toMatch(/^no space left in .*small\/initramfs for the guest image .*OOMLAB_CACHE_DIR/)
      expect(readdirSync(join(small, 'initramfs'))).toEqual([])
    } finally {
      await execa('umount', [small])
    }
  })
})

describe('the kernel cache', () => {
  // Through resolveKernel, not the CLI: the CLI checks for QEMU first, and a Vagrant box has none.
  it('names the mirror and apt\'s reason when the mirror cannot be reached', { timeout: 120_000 * timeoutScale() }, async () => {
    const cache = mkdtempSync(join(tmpdir(), 'oomlab-mirrortest-'))
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    vi.stubEnv('OOMLAB_DEBIAN_MIRROR', 'http://127.0.0.1:9/debian')
    try {
      const err = await resolveKernel('trixie', { cacheDir: cache, refresh: true }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(UserError)
      expect((err as Error).message).not.toContain('\n')
      expect((err as Error).message).toMatch(/^could not update the package lists of Debian trixie from http:\/\/127\.0\.0\.1:9\/debian: .*(refused|connect|Failed to fetch)/i)
    } finally {
      vi.unstubAllEnvs()
      rmSync(cache, { recursive: true, force: true })
    }
  })
})
