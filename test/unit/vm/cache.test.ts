/**
 * The cache's bound and its pruning, on a cache folder laid out as runs leave it (a snapshot record
 * from a real run, test/fixtures/cache/snapshot-record.json, rewritten for this folder's files).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mkdirSync, readFileSync, existsSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dir, type DirectoryResult } from 'tmp-promise'
import { cacheLimit, enforceLimit, IN_USE_MS, listCache, pruneCache } from '../../../src/vm/cache.js'
import { pruneOldImages } from '../../../src/vm/image/store.js'

const RECORD = JSON.parse(readFileSync(new URL('../../fixtures/cache/snapshot-record.json', import.meta.url), 'utf8')) as { inputs: string[]; files?: object }
const QEMU = RECORD.inputs.find((i) => i.startsWith('qemu:'))!.slice(5)
const MiB = 1024 * 1024
const DAY = 24 * 3600 * 1000

let tmp: DirectoryResult
let cache: string
beforeEach(async () => {
  tmp = await dir({ unsafeCleanup: true })
  cache = join(tmp.path, 'cache')
  mkdirSync(cache)
})
afterEach(async () => tmp.cleanup())

const write = (path: string, bytes: number | string) => {
  mkdirSync(join(path, '..'), { recursive: true })
  writeFileSync(path, typeof bytes === 'string' ? bytes : Buffer.alloc(bytes, 1))
}
/** Made and last used `msAgo`: the stamp and the files beside it. */
const used = (path: string, msAgo: number, ...files: string[]) => {
  const t = new Date(Date.now() - msAgo)
  write(path, '')
  for (const f of [path, ...files]) utimesSync(f, t, t)
}

function kernel(release: string, o: { suite?: string; usedAgo?: number } = {}): string {
  const path = join(cache, 'kernels', release, 'vmlinuz')
  write(path, MiB)
  write(join(cache, 'kernels', release, 'kernel.json'), JSON.stringify({ release }))
  if (o.suite) write(join(cache, 'kernels/suites', `${o.suite}.json`), JSON.stringify({ suite: o.suite, release }))
  used(join(cache, 'kernels', release, '.used'), o.usedAgo ?? 0, path, join(cache, 'kernels', release, 'kernel.json'))
  return path
}

function image(hash: string, usedAgo = 0): string {
  const path = join(cache, 'initramfs', `lab-${hash}.cpio`)
  write(path, MiB)
  used(`${path}.used`, usedAgo, path)
  return path
}

/** /proc/PID/stat's start time, as a snapshot's lock records its maker. */
const startOf = (pid: number) => { const t = readFileSync(`/proc/${pid}/stat`, 'utf8'); return t.slice(t.lastIndexOf(')') + 2).split(' ')[19] }

function snapshot(key: string, o: { kernel: string; release: string; image: string; hash: string; qemu?: string; usedAgo?: number; mib?: number; oldRecord?: boolean; ramFile?: boolean }): void {
  const st = statSync(o.kernel)
  const inputs = RECORD.inputs.map((i) =>
    i.startsWith('kernel:') ? `kernel:${o.release} ${o.release} (debian-kernel@lists.debian.org) #1 SMP ${st.size} ${st.mtimeMs}` : i.startsWith('initrd:') ? `initrd:${o.hash}` : i.startsWith('qemu:') ? `qemu:${o.qemu ?? QEMU}` : i === 'ram:stream' && o.ramFile ? 'ram:file' : i,
  )
  const base = join(cache, 'snapshots', key)
  // The older format: the devices' state, and the RAM in a file beside it.
  if (o.ramFile) write(`${base}.ram`, (o.mib ?? 2) * MiB)
  write(`${base}.state`, o.ramFile ? 4096 : (o.mib ?? 2) * MiB)
  write(`${base}.json`, JSON.stringify({ ...RECORD, key, inputs, ...(!o.oldRecord && { files: { kernel: o.kernel, initrd: o.image } }) }))
  used(`${base}.used`, o.usedAgo ?? 0, `${base}.state`, `${base}.json`)
}

describe('the cache', () => {
  it('lists kernels, images and snapshots with their size on disk, and says which can never be used again', async () => {
    const k = kernel('6.1.0-50-cloud-amd64', { suite: 'bookworm' })
    const gone = kernel('5.10.0-32-cloud-amd64')
    const img = image('7c88eb8ef3aa49c0')
    snapshot('aaaaaaaaaaaaaaaaaaaaaaaa', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0' })
    snapshot('bbbbbbbbbbbbbbbbbbbbbbbb', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', qemu: 'QEMU emulator version 7.1.0 size=1 mtime=2' })
    snapshot('cccccccccccccccccccccccc', { kernel: gone, release: '5.10.0-32-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0' })
    snapshot('dddddddddddddddddddddddd', { kernel: k, release: '6.1.0-50-cloud-amd64', image: join(cache, 'initramfs/lab-0000000000000000.cpio'), hash: '0000000000000000' })
    write(join(cache, 'snapshots/eeeeeeeeeeeeeeeeeeeeeeee.ram.partial'), MiB)
    // A kernel file replaced since (another build under the same release): its snapshots are stale.
    writeFileSync(gone, Buffer.alloc(2 * MiB, 2))

    const entries = await listCache(cache, QEMU)
    const of = (id: string) => entries.find((e) => e.id === id)!
    expect(entries.map((e) => `${e.kind} ${e.id}`).sort()).toEqual(['image lab-7c88eb8ef3aa49c0.cpio', 'kernel 5.10.0-32-cloud-amd64', 'kernel 6.1.0-50-cloud-amd64', 'snapshot aaaaaaaaaaaaaaaaaaaaaaaa', 'snapshot bbbbbbbbbbbbbbbbbbbbbbbb', 'snapshot cccccccccccccccccccccccc', 'snapshot dddddddddddddddddddddddd', 'snapshot eeeeeeeeeeeeeeeeeeeeeeee'])
    expect(of('aaaaaaaaaaaaaaaaaaaaaaaa').stale).toBeUndefined()
    expect(of('aaaaaaaaaaaaaaaaaaaaaaaa').bytes).toBeGreaterThanOrEqual(2 * MiB)
    expect(of('bbbbbbbbbbbbbbbbbbbbbbbb').stale).toBe('made by another QEMU build')
    expect(of('cccccccccccccccccccccccc').stale).toBe('its kernel 5.10.0-32-cloud-amd64 is gone or changed')
    expect(of('dddddddddddddddddddddddd').stale).toBe('its guest image is gone')
    expect(of('eeeeeeeeeeeeeeeeeeeeeeee').stale).toBe('no record: a snapshot never finished')
    expect(of('6.1.0-50-cloud-amd64').about).toBe('named by a suite')
    expect(of('5.10.0-32-cloud-amd64').about).toMatch(/^named by no suite/)
  })

  it('prunes the stale, kernels no suite names that were not used for 30 days with their snapshots, and notes of missing images', async () => {
    const k = kernel('6.1.0-50-cloud-amd64', { suite: 'bookworm' })
    const old = kernel('6.1.0-40-cloud-amd64', { usedAgo: 40 * DAY })
    const recent = kernel('6.12.38+deb13-cloud-amd64', { usedAgo: 2 * DAY })
    const img = image('7c88eb8ef3aa49c0')
    snapshot('0000000000000000000000e1', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0' })
    snapshot('0000000000000000000000e2', { kernel: old, release: '6.1.0-40-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', usedAgo: 40 * DAY })
    snapshot('0000000000000000000000e3', { kernel: recent, release: '6.12.38+deb13-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0' })
    snapshot('0000000000000000000000e4', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', qemu: 'another' })
    write(join(cache, 'initramfs/lab-inputs-1111'), `${img}\n`)
    write(join(cache, 'initramfs/lab-inputs-2222'), `${join(cache, 'initramfs/lab-ffffffffffffffff.cpio')}\n`)

    const gone = await pruneCache(cache, { qemuId: QEMU })
    expect(gone.map((e) => `${e.kind} ${e.id}`).sort()).toEqual(['kernel 6.1.0-40-cloud-amd64', 'snapshot 0000000000000000000000e2', 'snapshot 0000000000000000000000e4'])
    expect((await listCache(cache, QEMU)).map((e) => e.id).sort()).toEqual(['0000000000000000000000e1', '0000000000000000000000e3', '6.1.0-50-cloud-amd64', '6.12.38+deb13-cloud-amd64', 'lab-7c88eb8ef3aa49c0.cpio'])
    expect(existsSync(join(cache, 'kernels/6.1.0-40-cloud-amd64'))).toBe(false)
    expect(existsSync(join(cache, 'snapshots/0000000000000000000000e2.state'))).toBe(false)
    expect(existsSync(join(cache, 'initramfs/lab-inputs-1111'))).toBe(true)
    expect(existsSync(join(cache, 'initramfs/lab-inputs-2222'))).toBe(false)
  })

  it('evicts the least recently used past its limit, a kernel with its snapshots, never what was used within the hour', async () => {
    const a = kernel('5.10.0-32-cloud-amd64', { suite: 'bullseye', usedAgo: 10 * DAY })
    const b = kernel('6.1.0-50-cloud-amd64', { suite: 'bookworm', usedAgo: 0 })
    const img = image('7c88eb8ef3aa49c0')
    snapshot('0000000000000000000000a1', { kernel: a, release: '5.10.0-32-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', usedAgo: 3 * DAY, mib: 8 })
    snapshot('0000000000000000000000b0', { kernel: b, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', usedAgo: 5 * DAY, mib: 8 })
    snapshot('0000000000000000000000b1', { kernel: b, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', usedAgo: IN_USE_MS / 2, mib: 8 })
    const total = (await listCache(cache)).reduce((s, e) => s + e.bytes, 0)

    // Room for all but 9 MiB: the oldest use goes first (the bullseye kernel, and its snapshot with it).
    const r = await enforceLimit(cache, total - 9 * MiB)
    expect(r.evicted.map((e) => `${e.kind} ${e.id}`)).toEqual(['kernel 5.10.0-32-cloud-amd64', 'snapshot 0000000000000000000000a1'])
    expect(r.over).toBeUndefined()

    // A limit nothing fits under: the old snapshot goes, what was used within the hour stays, and it says so.
    const r2 = await enforceLimit(cache, 1)
    expect(r2.evicted.map((e) => e.id)).toEqual(['0000000000000000000000b0'])
    expect(r2.over).toBe('everything left was used within the hour')
    expect(existsSync(join(cache, 'snapshots/0000000000000000000000b1.state'))).toBe(true)
    expect((await enforceLimit(cache, 0)).evicted).toEqual([])
  })

  it('calls a snapshot of the older format (its RAM in a file beside the state) stale, and prunes both files', async () => {
    const k = kernel('6.1.0-50-cloud-amd64', { suite: 'bookworm' })
    const img = image('7c88eb8ef3aa49c0')
    snapshot('0000000000000000000000f1', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', ramFile: true })
    snapshot('0000000000000000000000f2', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0' })
    const old = (await listCache(cache, QEMU)).find((e) => e.id === '0000000000000000000000f1')!
    expect(old.stale).toBe('its RAM is in a file beside the state, a format no longer restored')
    expect(old.bytes).toBeGreaterThanOrEqual(2 * MiB)
    expect((await pruneCache(cache, { qemuId: QEMU })).map((e) => e.id)).toEqual(['0000000000000000000000f1'])
    for (const f of ['.ram', '.state', '.json']) expect(existsSync(join(cache, `snapshots/0000000000000000000000f1${f}`))).toBe(false)
    expect(existsSync(join(cache, 'snapshots/0000000000000000000000f2.state'))).toBe(true)
  })

  it('counts blocks on disk, not a sparse file\'s length (the RAM file snapshots had before their RAM went into the state)', async () => {
    const k = kernel('6.1.0-50-cloud-amd64', { suite: 'bookworm' })
    const img = image('7c88eb8ef3aa49c0')
    snapshot('aaaaaaaaaaaaaaaaaaaaaaaa', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', mib: 1 })
    write(join(cache, 'snapshots/aaaaaaaaaaaaaaaaaaaaaaaa.ram'), 0)
    truncateSync(join(cache, 'snapshots/aaaaaaaaaaaaaaaaaaaaaaaa.ram'), 1024 * MiB)
    const e = (await listCache(cache, QEMU)).find((x) => x.kind === 'snapshot')!
    expect(e.bytes).toBeLessThan(2 * MiB)
  })

  it('never calls stale, prunes or evicts a snapshot a live process is making', async () => {
    const key = 'ffffffffffffffffffffffff'
    write(join(cache, 'snapshots', `${key}.state.partial`), MiB)
    write(join(cache, 'snapshots', `${key}.lock`), JSON.stringify({ pid: process.pid, start: startOf(process.pid), since: new Date().toISOString() }))
    utimesSync(join(cache, 'snapshots', `${key}.state.partial`), new Date(Date.now() - 2 * DAY), new Date(Date.now() - 2 * DAY))
    const [e] = await listCache(cache, QEMU)
    expect(e).toMatchObject({ kind: 'snapshot', id: key, making: true, about: 'being made now' })
    expect(e!.stale).toBeUndefined()
    expect(await pruneCache(cache, { qemuId: QEMU })).toEqual([])
    expect((await enforceLimit(cache, 1)).evicted).toEqual([])
    // Once its maker is gone, what it left is stale.
    write(join(cache, 'snapshots', `${key}.lock`), JSON.stringify({ pid: process.pid, start: 'not-this-process', since: '' }))
    expect((await pruneCache(cache, { qemuId: QEMU })).map((x) => x.id)).toEqual([key])
    expect(existsSync(join(cache, 'snapshots', `${key}.state.partial`))).toBe(false)
  })

  it('judges a record older than its files field by the cached kernel of its release, and leaves one of a kernel from elsewhere alone', async () => {
    const k = kernel('6.1.0-50-cloud-amd64', { suite: 'bookworm' })
    const img = image('7c88eb8ef3aa49c0')
    snapshot('aaaaaaaaaaaaaaaaaaaaaaaa', { kernel: k, release: '6.1.0-50-cloud-amd64', image: img, hash: '7c88eb8ef3aa49c0', oldRecord: true })
    // A user's own bzImage (--kernel-image): its release is not in the cache.
    const own = join(tmp.path, 'bzImage')
    write(own, MiB)
    snapshot('bbbbbbbbbbbbbbbbbbbbbbbb', { kernel: own, release: '7.0.0-mine', image: img, hash: '7c88eb8ef3aa49c0', oldRecord: true })
    let entries = await listCache(cache, QEMU)
    expect(entries.filter((e) => e.stale !== undefined)).toEqual([])
    writeFileSync(k, Buffer.alloc(2 * MiB, 3))
    entries = await listCache(cache, QEMU)
    expect(entries.filter((e) => e.stale !== undefined).map((e) => `${e.id}: ${e.stale}`)).toEqual(['aaaaaaaaaaaaaaaaaaaaaaaa: its kernel 6.1.0-50-cloud-amd64 is gone or changed'])
  })

  it('lists and removes only names of the cache\'s own shapes', async () => {
    write(join(cache, 'snapshots/.nfs000000001'), MiB)
    write(join(cache, 'snapshots/notes.txt'), 'mine')
    write(join(cache, 'kernels/README'), 'mine')
    write(join(cache, 'initramfs/my-image.img'), 'mine')
    expect(await listCache(cache, QEMU)).toEqual([])
    expect(await pruneCache(cache, { qemuId: QEMU })).toEqual([])
    for (const f of ['snapshots/.nfs000000001', 'snapshots/notes.txt', 'kernels/README', 'initramfs/my-image.img']) expect(existsSync(join(cache, f))).toBe(true)
  })

  it('takes its limit from OOMLAB_CACHE_LIMIT, and refuses what is not a size', () => {
    expect(cacheLimit(undefined)).toBe(4 * 1024 ** 3)
    expect(cacheLimit('500M')).toBe(500 * MiB)
    expect(cacheLimit('2.5G')).toBe(2.5 * 1024 ** 3)
    expect(cacheLimit('0')).toBe(0)
    expect(() => cacheLimit('lots')).toThrow('OOMLAB_CACHE_LIMIT="lots": expected a size such as 4G, 500M or 0 (no limit)')
  })
})

describe('a new guest image', () => {
  it('replaces older ones of its name but the newest two, never one another run used within the hour', async () => {
    const dir = join(cache, 'initramfs')
    const image = (hex: string, madeAgo: number, usedAgo: number) => {
      const f = join(dir, `lab-${hex.repeat(16)}.cpio`)
      write(f, 1024)
      write(`${f}.sha256`, 'x')
      const made = new Date(Date.now() - madeAgo)
      utimesSync(f, made, made)
      used(`${f}.used`, usedAgo)
      return f
    }
    const fresh = image('a', 0, 0)
    const second = image('b', 60_000, 60_000)
    const third = image('e', 120_000, 120_000)
    const booting = image('c', 3 * IN_USE_MS, 5 * 60_000) // made long ago, a soak in another checkout still boots it
    const old = image('d', 4 * IN_USE_MS, 4 * IN_USE_MS)
    await pruneOldImages(dir, 'lab', `lab-${'a'.repeat(16)}.cpio`)
    expect([fresh, second, third, booting].map((f) => existsSync(f))).toEqual([true, true, true, true])
    expect([old, `${old}.sha256`, `${old}.used`].map((f) => existsSync(f))).toEqual([false, false, false])
  })
})

describe('kernels built from source', () => {
  /** A tree's build folder as `oomlab kernel build` leaves it: the tree it builds, its size, a log. */
  function buildFolder(id: string, tree: string, o: { mib: number; usedAgo?: number }) {
    const d = join(cache, 'kernels/build', id)
    write(join(d, 'tree'), `${tree}\n`)
    write(join(d, 'bytes'), String(o.mib * MiB))
    write(join(d, 'build.log'), 'x')
    used(join(d, '.used'), o.usedAgo ?? 0, join(d, 'build.log'))
    return d
  }

  it('lists built kernels, build folders and unpacked sources; a build folder whose tree is gone is stale', async () => {
    const key = 'a'.repeat(24)
    write(join(cache, 'kernels/built', key, 'bzImage'), MiB)
    write(join(cache, 'kernels/built', key, 'build.json'), JSON.stringify({ release: '6.1.192', tree: tmp.path }))
    buildFolder('0123456789abcdef', tmp.path, { mib: 1500 })
    buildFolder('fedcba9876543210', join(tmp.path, 'gone'), { mib: 10 })
    write(join(cache, 'kernels/src/cacdc3830989309d/origin.json'), JSON.stringify({ tarball: '/usr/src/linux-source-6.1.tar.xz', top: 'linux-source-6.1' }))
    write(join(cache, 'kernels/src/cacdc3830989309d/bytes'), String(1400 * MiB))
    const entries = await listCache(cache, QEMU)
    expect(entries.map((e) => [e.kind, e.id, e.bytes >= MiB, e.stale])).toEqual([
      ['kernel', `built/${key}`, true, undefined],
      ['build', 'build/0123456789abcdef', true, undefined],
      ['build', 'build/fedcba9876543210', true, `its tree ${join(tmp.path, 'gone')} is gone`],
      ['source', 'src/cacdc3830989309d', true, undefined],
    ])
    expect(entries[0]!.about).toBe(`6.1.192 built from ${tmp.path}`)
    expect((await pruneCache(cache, { qemuId: QEMU })).map((e) => e.id)).toEqual(['build/fedcba9876543210'])
    expect(existsSync(join(cache, 'kernels/build/0123456789abcdef'))).toBe(true)
  })

  it('keeps build folders and sources out of the size limit (the next build of the tree needs them), and prunes them after 30 days unused', async () => {
    buildFolder('0123456789abcdef', tmp.path, { mib: 1500, usedAgo: 2 * IN_USE_MS })
    const k = kernel('6.1.0-50-cloud-amd64', { suite: 'bookworm', usedAgo: 2 * IN_USE_MS })
    expect(k).toContain('vmlinuz')
    const r = await enforceLimit(cache, 1)
    expect(r.evicted.map((e) => e.kind)).toEqual(['kernel'])
    expect(existsSync(join(cache, 'kernels/build/0123456789abcdef'))).toBe(true)
    buildFolder('0123456789abcdef', tmp.path, { mib: 1500, usedAgo: 31 * DAY })
    expect((await pruneCache(cache, { qemuId: QEMU })).map((e) => e.id)).toEqual(['build/0123456789abcdef'])
  })
})
