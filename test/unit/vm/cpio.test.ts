// The initramfs writer, read back by GNU cpio: what the kernel unpacks must be what was put in.
import { describe, it, expect } from 'vitest'
import { withDir } from 'tmp-promise'
import { execa } from 'execa'
import { join } from 'node:path'
import { readFileSync, readlinkSync, statSync, lstatSync, writeFileSync } from 'node:fs'
import { writeCpio } from '../../../src/vm/image/cpio.js'
import { parseLdd } from '../../../src/vm/image/tree.js'

describe('newc cpio', () => {
  it('writes two images at once without mixing their files (a matrix prepares kernels in parallel)', async () => {
    await withDir(
      async ({ path: dir }) => {
        // Several MiB each, so the copies take many reads and interleave.
        const a = Buffer.alloc(6 << 20, 0xaa)
        const b = Buffer.alloc(6 << 20, 0xbb)
        writeFileSync(join(dir, 'a'), a)
        writeFileSync(join(dir, 'b'), b)
        const image = (x: string, data: Buffer) => writeCpio(join(dir, `${x}.cpio`), [{ type: 'file', path: `/${x}`, source: join(dir, x), mode: 0o644, size: data.length }])
        await Promise.all([image('a', a), image('b', b)])
        for (const [x, data] of [['a', a], ['b', b]] as const) expect(readFileSync(join(dir, `${x}.cpio`)).indexOf(data)).toBeGreaterThan(0)
      },
      { unsafeCleanup: true },
    )
  })

  // Extracting files owned by uid 1000 and a device node takes root.
  const why = process.getuid?.() === 0 ? '' : ' (skipped: needs root to extract owned files and a device node)'
  it.skipIf(why !== '')(`round-trips directories, files, data, symlinks and device nodes through GNU cpio${why}`, async () => {
    await withDir(
      async ({ path: dir }) => {
        const src = join(dir, 'src.bin')
        const odd = Buffer.from(Array.from({ length: 4099 }, (_, i) => i % 251)) // not a multiple of 4
        writeFileSync(src, odd)
        const image = join(dir, 'image.cpio')
        await writeCpio(image, [
          { type: 'dir', path: '/etc' },
          { type: 'dir', path: '/home/u', mode: 0o750, uid: 1000, gid: 1000 },
          { type: 'file', path: '/usr/bin/prog', source: src, mode: 0o755, size: odd.length },
          { type: 'data', path: '/etc/hosts', data: '127.0.0.1 localhost\n' },
          { type: 'symlink', path: '/lib', target: 'usr/lib' },
          { type: 'chardev', path: '/dev/console', major: 5, minor: 1 },
        ])
        const out = join(dir, 'out')
        await execa('mkdir', [out])
        await execa('cpio', ['-idmu', '--quiet', '--no-absolute-filenames', '-F', image], { cwd: out })
        expect(readFileSync(join(out, 'usr/bin/prog')).equals(odd)).toBe(true)
        expect(statSync(join(out, 'usr/bin/prog')).mode & 0o777).toBe(0o755)
        expect(readFileSync(join(out, 'etc/hosts'), 'utf8')).toBe('127.0.0.1 localhost\n')
        expect(readlinkSync(join(out, 'lib'))).toBe('usr/lib')
        const console = lstatSync(join(out, 'dev/console'))
        expect(console.isCharacterDevice()).toBe(true)
        expect([Math.floor(console.rdev / 256), console.rdev % 256]).toEqual([5, 1])
        const home = statSync(join(out, 'home/u'))
        expect([home.uid, home.gid, home.mode & 0o777]).toEqual([1000, 1000, 0o750])
      },
      { unsafeCleanup: true },
    )
  })
})

describe('ldd output', () => {
  it('lists the libraries of a real dynamic program, loader included', async () => {
    const { stdout } = await execa('ldd', [process.execPath])
    const libs = parseLdd(stdout)
    expect(libs.some((l) => /\/libc\.so\.6$/.test(l))).toBe(true)
    expect(libs.some((l) => /ld-linux-x86-64\.so\.2$/.test(l))).toBe(true)
    expect(libs.every((l) => l.startsWith('/'))).toBe(true)
  })
})
