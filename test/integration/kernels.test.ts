import { existsSync } from 'node:fs'
import { copyFile, cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { dir, type DirectoryResult } from 'tmp-promise'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { UserError } from '../../src/util/errors.js'
import { cacheDir, projectRoot } from '../../src/util/paths.js'
import { readBzImageVersion } from '../../src/kernel/bzimage.js'
import { kernelFromImage } from '../../src/kernel/image.js'
import { DEBIAN_SUITES, DEFAULT_KERNEL, resolveKernel } from '../../src/kernel/resolve.js'

const fixtures = join(projectRoot, 'test/fixtures/kernels')

/** The first 64 KiB of real kernels (Debian's, and a 4.19 built from its tree), and the version strings their headers hold. */
const KERNEL_HEADS: Record<string, string> = {
  '5.10.0-32-cloud-amd64.head':
    '5.10.0-32-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP Debian 5.10.223-1 (2024-08-10)',
  '6.1.0-50-cloud-amd64.head':
    '6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)',
  '6.12.117+deb13-cloud-amd64.head':
    '6.12.117+deb13-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1 (2026-11-12)',
  '7.2.13+deb14-cloud-amd64.head':
    '7.2.13+deb14-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-28)',
  // Built from a released 4.19 tree, not Debian's (../shared/kernels/linux-4.19.304/SOURCE.md).
  '4.19.304.head': '4.19.304 (root@vm) #1 SMP Sun Dec 6 23:24:49 UTC 2026',
}

const readFixture = (name: string) => readFile(join(fixtures, name))

async function thrown(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection')
    },
    (err: unknown) => err,
  )
}

describe('readBzImageVersion', () => {
  it('has a fixture for every kernel head listed here', async () => {
    const heads = (await readdir(fixtures)).filter((file) => file.endsWith('.head'))
    expect(heads.sort()).toEqual(Object.keys(KERNEL_HEADS).sort())
  })

  for (const [file, version] of Object.entries(KERNEL_HEADS)) {
    it(`reads the version of ${file.replace(/\.head$/, '')}`, async () => {
      const read = readBzImageVersion(await readFixture(file))
      expect(read).toBe(version)
      expect(read!.split(' ')[0]).toBe(file.replace(/\.head$/, ''))
    })
  }

  it('returns undefined for buffers that are not kernels', async () => {
    expect(readBzImageVersion(Buffer.alloc(0))).toBeUndefined()
    expect(readBzImageVersion(Buffer.alloc(65536))).toBeUndefined()
    expect(readBzImageVersion(await readFile(join(projectRoot, 'package.json')))).toBeUndefined()
    expect(readBzImageVersion(await readFile(join(projectRoot, 'src/kernel/bzimage.ts')))).toBeUndefined()
  })

  it('returns undefined when a real header is damaged or cut short', async () => {
    const head = await readFixture('6.1.0-50-cloud-amd64.head')
    const versionAt = head.readUInt16LE(0x20e) + 0x200

    const noMagic = Buffer.from(head)
    noMagic.write('HdrX', 0x202, 'latin1')
    expect(readBzImageVersion(noMagic)).toBeUndefined()

    const noBootFlag = Buffer.from(head)
    noBootFlag.writeUInt16LE(0, 0x1fe)
    expect(readBzImageVersion(noBootFlag)).toBeUndefined()

    const pointerPastEnd = Buffer.from(head)
    pointerPastEnd.writeUInt16LE(0xffff, 0x20e)
    expect(readBzImageVersion(pointerPastEnd)).toBeUndefined()

    expect(readBzImageVersion(head.subarray(0, versionAt))).toBeUndefined()
    expect(readBzImageVersion(head.subarray(0, versionAt + 10))).toBeUndefined() // no NUL yet
    expect(readBzImageVersion(head.subarray(0, 0x200))).toBeUndefined()
  })
})

describe('kernelFromImage', () => {
  let tmp: DirectoryResult
  beforeEach(async () => {
    tmp = await dir({ unsafeCleanup: true })
  })
  afterEach(async () => {
    await tmp.cleanup()
  })

  it('rejects a file that is not a kernel, in one line naming the path', async () => {
    const path = join(projectRoot, 'package.json')
    const err = await thrown(kernelFromImage(path))
    expect(err).toBeInstanceOf(UserError)
    expect((err as UserError).message).toBe(`${path} is not an x86 Linux kernel image (bzImage)`)
  })

  it('rejects a missing path and a folder', async () => {
    for (const path of [join(tmp.path, 'nope'), tmp.path]) {
      const err = await thrown(kernelFromImage(path))
      expect(err).toBeInstanceOf(UserError)
      expect((err as UserError).message).toContain(path)
    }
  })

  it('rejects a real kernel cut short, saying how long it should be', async () => {
    const path = join(tmp.path, 'vmlinuz')
    await copyFile(join(fixtures, '6.1.0-50-cloud-amd64.head'), path)
    const err = await thrown(kernelFromImage(path))
    expect(err).toBeInstanceOf(UserError)
    expect((err as UserError).message).toMatch(/is truncated \(65536 bytes, its header says \d+\)/)
  })
})

describe('resolveKernel names', () => {
  let tmp: DirectoryResult
  beforeEach(async () => {
    tmp = await dir({ unsafeCleanup: true })
  })
  afterEach(async () => {
    await tmp.cleanup()
  })

  it('offers the five Debian suites with bookworm as the default', () => {
    expect(DEBIAN_SUITES.map((s) => s.name)).toEqual(['bullseye', 'bookworm', 'bookworm-backports', 'trixie', 'sid'])
    expect(DEFAULT_KERNEL).toBe('bookworm')
    for (const suite of DEBIAN_SUITES) expect(suite.note).not.toBe('')
  })

  for (const spec of ['bogus', 'Bookworm', 'stable', '6.1', 'linux-image-6.1.0-50-cloud-amd64', './vmlinuz', '']) {
    it(`rejects ${JSON.stringify(spec)} with one line listing the suites, before touching the cache`, async () => {
      const err = await thrown(resolveKernel(spec, { cacheDir: tmp.path }))
      expect(err).toBeInstanceOf(UserError)
      const message = (err as UserError).message
      expect(message).not.toContain('\n')
      for (const suite of DEBIAN_SUITES) expect(message).toContain(suite.name)
      expect(message).toContain('6.1.0-50')
      expect(message).toContain('--kernel-image PATH')
      expect(await readdir(tmp.path)).toEqual([])
    })
  }
})

// Uses the bookworm kernel a real fetch left in the user's cache; skipped where there is none.
const cachedBookworm = join(cacheDir(), 'kernels/suites/bookworm.json')

const noKernel = existsSync(cachedBookworm) ? '' : ` (skipped: no bookworm kernel cached in ${cacheDir()} yet; any run that boots a guest fetches it)`
describe.skipIf(noKernel !== '')(`a cached Debian kernel${noKernel}`, () => {
  let tmp: DirectoryResult
  let release: string
  let savedPath: string | undefined
  beforeEach(async () => {
    tmp = await dir({ unsafeCleanup: true })
    release = JSON.parse(await readFile(cachedBookworm, 'utf8')).release
    await mkdir(join(tmp.path, 'kernels/suites'), { recursive: true })
    await copyFile(cachedBookworm, join(tmp.path, 'kernels/suites/bookworm.json'))
    await cp(join(cacheDir(), 'kernels', release), join(tmp.path, 'kernels', release), { recursive: true })
    // With no PATH, any apt run fails at once: a warm path that needs none passes regardless.
    savedPath = process.env.PATH
    process.env.PATH = ''
  })
  afterEach(async () => {
    process.env.PATH = savedPath
    await tmp.cleanup()
  })

  it('is used for its suite name without running apt', async () => {
    const log: string[] = []
    const kernel = await resolveKernel('bookworm', { cacheDir: tmp.path, log: (line) => log.push(line) })
    expect(kernel).toMatchObject({ name: 'bookworm', release, source: 'debian', suite: 'bookworm' })
    expect(kernel.path).toBe(join(tmp.path, 'kernels', release, 'vmlinuz'))
    expect(kernel.debianPackage).toBe(`linux-image-${release}`)
    expect(log).toEqual([])
  })

  it('is used for its version without running apt', async () => {
    const abi = release.replace(/-cloud-amd64$/, '')
    const kernel = await resolveKernel(abi, { cacheDir: tmp.path })
    expect(kernel).toMatchObject({ name: abi, release })
  })

  it('passes as a --kernel-image', async () => {
    const path = join(tmp.path, 'kernels', release, 'vmlinuz')
    const kernel = await kernelFromImage(path)
    expect(kernel).toMatchObject({ name: path, path, release, source: 'file' })
    expect(kernel.versionString.startsWith(`${release} (debian-kernel@lists.debian.org)`)).toBe(true)
  })

  it('is fetched again when it no longer matches its sha256', async () => {
    const path = join(tmp.path, 'kernels', release, 'vmlinuz')
    const bytes = await readFile(path)
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1)
    await writeFile(path, bytes)
    const log: string[] = []
    const err = await thrown(resolveKernel('bookworm', { cacheDir: tmp.path, log: (line) => log.push(line) }))
    expect(log[0]).toBe(`kernel bookworm: cached kernel ${release} does not match its recorded sha256; fetching it again`)
    // The refetch then needs apt, which this test hid.
    expect(err).toBeInstanceOf(UserError)
    expect((err as UserError).message).toMatch(/apt-get is not installed/)
  })
})
