/**
 * Long-lived guests and their snapshots, against the real QEMU with a tiny busybox guest whose /init
 * answers on /dev/ttyS1: boot, save, restore, and the snapshot cache under faults (a state cut short,
 * a stale record, a state QEMU rejects, a full disk, an interrupt while saving, two makers at once).
 * Over 400 lines because each fault is a test of its own against the one tiny guest the file boots.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { closeSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { execa } from 'execa'
import { GuestVm, type MachineSpec } from '../../src/vm/vm.js'
import { machineArgs } from '../../src/vm/qemu/command.js'
import { ensureSnapshot, qemuBuildId, restoreFromSnapshot, snapshotKey, type Ready, type Snapshot, type SnapshotIds } from '../../src/vm/snapshot/store.js'
import { ImageTree } from '../../src/vm/image/tree.js'
import { buildInitramfs, imageWithModules, zstdImage, zstdInitrd } from '../../src/vm/image/store.js'
import { probeTree, staticBusybox } from '../../src/vm/image/recipes.js'
import { bootProbe } from '../../src/vm/accel.js'
import { writeCpio } from '../../src/vm/image/cpio.js'
import { DEFAULT_KERNEL, resolveKernel } from '../../src/kernel/resolve.js'
import { cacheDir, projectRoot } from '../../src/util/paths.js'
import { which } from '../../src/util/which.js'
import { UserError } from '../../src/util/errors.js'
import { timeoutScale } from '../../src/util/timeout-scale.js'
import { startScript } from '../helpers/oomlab.js'
import { until } from '../helpers/poll.js'

const why = !which('qemu-system-x86_64') ? 'qemu-system-x86_64 is not installed' : process.getuid?.() !== 0 ? 'needs root' : ''
const T = timeoutScale()

/** ttyS1 is opened once (reopening it per line loses the host's input), raw so bytes pass unchanged. */
const INIT = `#!/bin/sh
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
stty -F /dev/ttyS1 raw -echo
exec 3<>/dev/ttyS1
[ -e /second-archive ] && cat /second-archive >&3
echo READY >&3
while read -r line <&3; do
  case "$line" in
    uptime) echo "uptime: $(cut -d' ' -f1 /proc/uptime)" >&3 ;;
    *) echo "echo: $line" >&3 ;;
  esac
done
`

/** Lines from a guest's agent socket, one reader per socket. */
class Lines {
  private readonly got: string[] = []
  private readonly waiters = new Set<() => void>()
  private static readonly of = new WeakMap<Socket, Lines>()

  static on(s: Socket): Lines {
    let l = Lines.of.get(s)
    if (!l) Lines.of.set(s, (l = new Lines(s)))
    return l
  }

  private constructor(private readonly s: Socket) {
    let partial = ''
    s.setEncoding('utf8')
    s.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() ?? ''
      this.got.push(...lines)
      this.notify()
    })
    s.on('close', () => this.notify())
  }

  private notify() {
    for (const w of [...this.waiters]) w()
  }

  /** The first line matching `re` (the lines before it are dropped). */
  next(re: RegExp, ms = 15_000 * T): Promise<string> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(check)
      }
      const check = () => {
        const i = this.got.findIndex((l) => re.test(l))
        if (i >= 0) {
          done()
          resolve(this.got.splice(0, i + 1).at(-1)!)
        } else if (this.s.destroyed) {
          done()
          reject(new Error(`the agent socket closed while waiting for ${re}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no line matching ${re} within ${ms} ms; got ${JSON.stringify(this.got)}`))
      }, ms)
      this.waiters.add(check)
      check()
    })
  }
}

async function ask(vm: GuestVm, line: string, answer: RegExp): Promise<string> {
  const lines = Lines.on(vm.agent)
  vm.agent.write(`${line}\n`)
  return lines.next(answer)
}

async function uptime(vm: GuestVm): Promise<number> {
  return Number((await ask(vm, 'uptime', /^uptime: /)).split(' ')[1])
}

/** The guest's uptime when each snapshot was saved, by snapshot state file. */
let savedUptime: number | undefined

/** After boot: the guest's READY; after a restore: an answer to a ping. */
const ready: Ready = async (vm, phase) => {
  if (phase === 'booted') {
    await Lines.on(vm.agent).next(/^READY$/, 30_000 * T) // a loaded machine (other test files run beside) boots slowly
    savedUptime = await uptime(vm)
  } else await ask(vm, 'ping', /^echo: ping$/)
}

/** PIDs of QEMU processes whose command line contains `text`. */
function qemuWith(text: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        return cmd.includes('qemu-system') && cmd.includes(text)
      } catch {
        return false
      }
    })
    .map(Number)
}

describe.skipIf(why !== '')(`long-lived QEMU guests and their snapshots${why ? ` (skipped: ${why})` : ''}`, () => {
  let spec: MachineSpec
  let ids: SnapshotIds
  const caches: string[] = []
  const newCache = () => {
    const c = mkdtempSync(join(tmpdir(), 'oomlab-snaptest-'))
    caches.push(c)
    return c
  }
  const logs: string[] = []
  const opts = (cache: string) => ({ cacheDir: cache, ids, ready, bootTimeoutMs: 30_000 * T, log: (l: string) => logs.push(l) })

  beforeAll(async () => {
    const kernel = await resolveKernel(DEFAULT_KERNEL, { cacheDir: cacheDir(), log: (l) => console.log(l) })
    const t = new ImageTree()
    await t.file(await staticBusybox(), '/bin/busybox')
    for (const a of ['sh', 'mount', 'stty', 'cut', 'cat']) t.symlink(`/bin/${a}`, 'busybox')
    t.dir('/proc')
    t.chardev('/dev/console', 5, 1)
    t.data('/init', INIT, 0o755)
    const image = await buildInitramfs(cacheDir(), t, 'echo-test')
    spec = { qemu: 'qemu-system-x86_64', kernel: kernel.path, initrd: image.path, accel: 'tcg', memoryMiB: 256, cpus: 1, append: [] }
    ids = { kernelId: kernel.versionString, initrdId: image.hash, qemuId: await qemuBuildId(spec.qemu) }
  }, 300_000)

  afterEach(() => {
    // Whatever a test did, no QEMU of this suite is left running.
    expect(qemuWith(spec.initrd)).toEqual([])
    logs.length = 0
  })
  afterAll(() => {
    for (const c of caches) rmSync(c, { recursive: true, force: true })
  })

  it('boots, echoes over the agent socket, and leaves nothing behind once disposed', { timeout: 30_000 * T }, async () => {
    const vm = await GuestVm.boot(spec, { connectTimeoutMs: 10_000 })
    try {
      expect(qemuWith(vm.workDir)).toHaveLength(1)
      await Lines.on(vm.agent).next(/^READY$/)
      expect(await ask(vm, 'hello there', /^echo: /)).toBe('echo: hello there')
      expect(vm.failure()).toBeUndefined()
    } finally {
      await vm.dispose()
    }
    await vm.dispose() // idempotent
    expect(qemuWith(vm.workDir)).toEqual([])
    expect(existsSync(vm.workDir)).toBe(false)
  })

  it("boots the accelerator probe's guest, which says so on its console and powers off; a guest that does not say so fails the probe", { timeout: 60_000 * T }, async () => {
    // Under TCG: whether KVM works is the probe's question, not this test's; the guest and its reading are the same.
    const probe = await buildInitramfs(cacheDir(), await probeTree(), 'probe')
    const r = await bootProbe('tcg', spec.qemu, spec.kernel, probe.path)
    expect(r.failure).toBeUndefined()
    const mute = new ImageTree()
    await mute.file(await staticBusybox(), '/bin/busybox')
    for (const a of ['sh', 'reboot']) mute.symlink(`/bin/${a}`, 'busybox')
    mute.chardev('/dev/console', 5, 1)
    mute.data('/init', '#!/bin/sh\nreboot -f\n', 0o755)
    const silent = await buildInitramfs(cacheDir(), mute, 'probe-test')
    expect((await bootProbe('tcg', spec.qemu, spec.kernel, silent.path)).failure).toMatch(/QEMU exited \(0\) and its console does not say why|its console did not say it booted/)
    expect(qemuWith(probe.path)).toEqual([])
  })

  it("boots from its image compressed with zstd, as a Debian kernel's lab guests do", { timeout: 30_000 * T }, async () => {
    const packed = await zstdImage(cacheDir(), { path: spec.initrd, hash: ids.initrdId, bytes: 0, reused: true, ms: 0 })
    expect(packed.hash).not.toBe(ids.initrdId)
    expect(statSync(packed.path).size).toBeLessThan(statSync(spec.initrd).size)
    expect((await zstdImage(cacheDir(), { path: spec.initrd, hash: ids.initrdId, bytes: 0, reused: true, ms: 0 })).reused).toBe(true)
    const vm = await GuestVm.boot({ ...spec, initrd: packed.path }, { connectTimeoutMs: 10_000 })
    try {
      await Lines.on(vm.agent).next(/^READY$/)
      expect(await ask(vm, 'unpacked', /^echo: /)).toBe('echo: unpacked')
    } finally {
      await vm.dispose()
    }
  })

  it('boots from its compressed image with a second, plain archive after it (a kernel\'s virtio modules)', { timeout: 30_000 * T }, async () => {
    const packed = await zstdImage(cacheDir(), { path: spec.initrd, hash: ids.initrdId, bytes: 0, reused: true, ms: 0 })
    // The compressed image ends where it ends: the second archive must still start where the kernel reads one.
    expect(statSync(packed.path).size % 4).not.toBe(0)
    const dir = newCache()
    mkdirSync(join(dir, 'initramfs'))
    await writeCpio(join(dir, 'second.cpio'), [{ type: 'data', path: '/second-archive', data: 'unpacked too\n' }])
    const both = await imageWithModules(dir, packed, join(dir, 'second.cpio'))
    const vm = await GuestVm.boot({ ...spec, initrd: both.path }, { connectTimeoutMs: 10_000 })
    try {
      await Lines.on(vm.agent).next(/^unpacked too$/)
    } finally {
      await vm.dispose()
    }
  })

  it('compresses the image only for kernels known to unpack zstd (Debian 5.9 and later; never one given by path)', () => {
    expect(zstdInitrd({ source: 'debian', release: '5.10.0-32-cloud-amd64' })).toBe(true)
    expect(zstdInitrd({ source: 'debian', release: '7.2.13+deb14-cloud-amd64' })).toBe(true)
    expect(zstdInitrd({ source: 'debian', release: '4.19.0-27-cloud-amd64' })).toBe(false)
    expect(zstdInitrd({ source: 'debian', release: '5.8.0-1-amd64' })).toBe(false)
    expect(zstdInitrd({ source: 'file', release: '6.1.0-50-cloud-amd64' })).toBe(false)
  })

  it('takes QEMU down with its parent, even when the parent is SIGKILLed', { timeout: 30_000 * T }, async () => {
    // node itself, not the tsx wrapper (which would start node as a child of its own): QEMU's parent is the one killed.
    const parent = startScript(
      newCache(),
      'parent',
      `import { GuestVm } from ${JSON.stringify(join(projectRoot, 'src/vm/vm.ts'))}
const vm = await GuestVm.boot(${JSON.stringify(spec)}, { connectTimeoutMs: 10000 })
console.log(vm.workDir)
setInterval(() => undefined, 1000)
`,
    )
    const workDir = await parent.line(/^\//)
    expect(qemuWith(workDir)).toHaveLength(1)
    parent.kill('SIGKILL')
    await parent.exit
    await until('its QEMU gone with it', () => qemuWith(workDir).length === 0, { everyMs: 50 })
    expect(qemuWith(workDir)).toEqual([])
    rmSync(workDir, { recursive: true, force: true }) // the parent had no chance to remove it
  })

  /** One snapshot made by two callers at once; the tests below start from links to it instead of booting again. */
  let reference: Promise<{ cache: string; made: [Snapshot, Snapshot]; uptime: number; logs: string[] }> | undefined
  const made = () =>
    (reference ??= (async () => {
      const cache = newCache()
      const both = await Promise.all([ensureSnapshot(spec, opts(cache)), ensureSnapshot(spec, opts(cache))])
      return { cache, made: both, uptime: savedUptime!, logs: [...logs] }
    })())
  /** A cache of its own holding the reference snapshot: the state hard-linked (never written in place), the record copied. */
  const seeded = async () => {
    const ref = (await made()).made[0]
    const cache = newCache()
    mkdirSync(join(cache, 'snapshots'))
    linkSync(ref.path, join(cache, 'snapshots', `${ref.key}.state`))
    copyFileSync(join(dirname(ref.path), `${ref.key}.json`), join(cache, 'snapshots', `${ref.key}.json`))
    return { cache, key: ref.key, state: join(cache, 'snapshots', `${ref.key}.state`), bytes: ref.bytes }
  }
  /** Replaces the seeded state by a copy (a new file: the reference stays whole) changed by `edit`. */
  const replaceState = (state: string, edit: (copy: string) => void) => {
    const copy = `${state}.copy`
    copyFileSync(state, copy)
    edit(copy)
    renameSync(copy, state)
  }

  it('makes a snapshot once when two callers want it at the same time', { timeout: 60_000 * T }, async () => {
    const { cache, made: [a, b], logs: madeLogs } = await made()
    expect([a.made, b.made].sort()).toEqual([false, true])
    expect(a.path).toBe(b.path)
    expect(madeLogs.filter((l) => /booting the guest/.test(l))).toHaveLength(1)
    expect(madeLogs.some((l) => /is making it; waiting/.test(l))).toBe(true)
    expect(madeLogs.join('\n')).toMatch(/agent ready after [\d.]+ s; saving\n.*saved in [\d.]+ s: \d+ MB/)
    expect(a.key).toBe(snapshotKey(spec, ids))
    expect(readdirSync(join(cache, 'snapshots')).sort()).toEqual([`${a.key}.json`, `${a.key}.state`])
    const record = JSON.parse(readFileSync(join(cache, 'snapshots', `${a.key}.json`), 'utf8'))
    expect(record.size).toBe(a.bytes)
    // The RAM is in the state: more than the devices' few hundred KB, less than the guest's 256 MiB (zero pages are not stored).
    expect(record.size).toBeGreaterThan(4 << 20)
    expect(record.size).toBeLessThan(256 << 20)
    expect(record).toMatchObject({ key: a.key, sha256: expect.stringMatching(/^[0-9a-f]{64}$/), qemuVersion: expect.stringMatching(/^QEMU emulator version /) })
    expect(record.inputs).toContain(`kernel:${ids.kernelId}`)
  })

  it('restores a saved guest that answers and carries on from where it was saved', { timeout: 60_000 * T }, async () => {
    const { cache, made: [a], uptime: before } = await made()
    for (let i = 0; i < 2; i++) {
      const { vm, snapshot } = await restoreFromSnapshot(spec, { ...opts(cache), timeoutMs: 20_000 * T })
      try {
        expect(snapshot).toEqual({ path: a.path, key: a.key, bytes: a.bytes, made: false })
        expect(await ask(vm, `hello ${i}`, /^echo: /)).toBe(`echo: hello ${i}`)
        // The same guest: its clock goes on from the save, not from a new boot.
        const now = await uptime(vm)
        expect(now).toBeGreaterThanOrEqual(before)
        expect(now).toBeLessThan(before + 3)
      } finally {
        await vm.dispose()
      }
    }
  })

  it('makes again a state cut short, taking over the lock of a maker that died', { timeout: 60_000 * T }, async () => {
    const s = await seeded()
    replaceState(s.state, (copy) => truncateSync(copy, statSync(s.state).size - 4096))
    const dead = execa('true')
    await dead
    writeFileSync(join(s.cache, 'snapshots', `${s.key}.lock`), JSON.stringify({ pid: dead.pid, start: '1', since: 'earlier' }))
    const cut = await ensureSnapshot(spec, opts(s.cache))
    expect(cut).toMatchObject({ made: true, remadeBecause: expect.stringMatching(/is \d+ bytes, the record says \d+ \(cut short\?\)/) })
    expect(statSync(cut.path).size).toBe(cut.bytes)
    expect(await ensureSnapshot(spec, opts(s.cache))).toMatchObject({ made: false })
    expect(readdirSync(join(s.cache, 'snapshots')).sort()).toEqual([`${s.key}.json`, `${s.key}.state`])
  })

  it('says, when it makes a snapshot beside another of the same kernel and image, how their machines differ', { timeout: 60_000 * T }, async () => {
    const s = await seeded()
    logs.length = 0
    const other = { ...spec, memoryMiB: 320 }
    expect(await ensureSnapshot(other, opts(s.cache))).toMatchObject({ made: true })
    expect(logs.find((l) => /booting the guest/.test(l))).toMatch(new RegExp(`booting the guest \\(the cached snapshot ${s.key} of this kernel and image was made with -m 256; this one is for -m 320\\)$`))
    // The old one is still there, never restored for the new machine.
    expect(readdirSync(join(s.cache, 'snapshots')).filter((f) => f.endsWith('.json'))).toHaveLength(2)
  })

  it('makes again a snapshot whose record names another key', { timeout: 60_000 * T }, async () => {
    const s = await seeded()
    const recordFile = join(s.cache, 'snapshots', `${s.key}.json`)
    writeFileSync(recordFile, JSON.stringify({ ...JSON.parse(readFileSync(recordFile, 'utf8')), key: 'another' }))
    expect(await ensureSnapshot(spec, opts(s.cache))).toMatchObject({ made: true, remadeBecause: `its record is for key another, not ${s.key}` })
  })

  it('makes again, once, a state that passes the cheap check but that QEMU rejects', { timeout: 60_000 * T }, async () => {
    const s = await seeded()
    const { mtime } = statSync(s.state)
    replaceState(s.state, (copy) => {
      const fd = openSync(copy, 'r+')
      writeSync(fd, Buffer.from('XXXX'), 0, 4, 0) // QEMU's magic; same size
      closeSync(fd)
      utimesSync(copy, mtime, mtime)
    })
    const { vm, snapshot } = await restoreFromSnapshot(spec, { ...opts(s.cache), timeoutMs: 20_000 * T })
    try {
      expect(snapshot).toMatchObject({ made: true, remadeBecause: expect.stringMatching(/^restoring it failed: QEMU exited while restoring the guest \(1\): QEMU failed: .*Not a migration stream/) })
      expect(logs.some((l) => /restoring it failed: .*; making it again$/.test(l))).toBe(true)
      expect(await ask(vm, 'after remake', /^echo: /)).toBe('echo: after remake')
    } finally {
      await vm.dispose()
    }
  })

  it('makes again a snapshot whose restored agent stays silent, and says so', { timeout: 60_000 * T }, async () => {
    const s = await seeded()
    let calls = 0
    // The first restored guest "never answers": the handshake hangs.
    const silentOnce: Ready = (vm, phase) => (phase === 'restored' && calls++ === 0 ? new Promise<void>(() => undefined) : ready(vm, phase))
    const { vm, snapshot } = await restoreFromSnapshot(spec, { ...opts(s.cache), ready: silentOnce, timeoutMs: 3_000 * T })
    try {
      expect(snapshot).toMatchObject({ made: true, remadeBecause: `restoring it failed: the guest agent did not answer within ${3 * T} s of the restore` })
      expect(await ask(vm, 'still there', /^echo: /)).toBe('echo: still there')
    } finally {
      await vm.dispose()
    }
  })

  it('leaves no partial file, lock or QEMU when interrupted while saving', { timeout: 60_000 * T }, async () => {
    const cache = newCache()
    const ac = new AbortController()
    const dir = join(cache, 'snapshots')
    // Abort as the save begins.
    try {
      const err = await ensureSnapshot(spec, { ...opts(cache), signal: ac.signal, log: (l: string) => void (/saving/.test(l) && ac.abort()) }).catch((e: unknown) => e)
      expect(ac.signal.aborted).toBe(true)
      expect((err as Error).message).toMatch(/interrupted while saving/)
    } finally {
      // nothing to stop
    }
    expect(readdirSync(dir)).toEqual([])
  })

  it.skipIf(process.getuid?.() !== 0)(`says so in one line when the disk fills while saving, and removes the partial file${process.getuid?.() === 0 ? '' : ' (skipped: mounting a small tmpfs needs root)'}`, { timeout: 60_000 * T }, async () => {
    const small = join(newCache(), 'small')
    mkdirSync(small)
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'oomlab-test', small])
    try {
      const err = await ensureSnapshot(spec, opts(small)).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(UserError)
      expect((err as Error).message).toMatch(/^no space left in .*small\/snapshots for the guest snapshot \(up to ~256 MB\): .*OOMLAB_CACHE_DIR/)
      expect(readdirSync(join(small, 'snapshots'))).toEqual([])
    } finally {
      await execa('umount', [small])
    }
  })

  it('builds the key from the machine, with the kernel and initrd by id', () => {
    expect(machineArgs(spec)).toEqual(expect.arrayContaining(['-serial', 'chardev:agent', '-kernel', spec.kernel, '-initrd', spec.initrd]))
    expect(machineArgs(spec).join(' ')).not.toMatch(/sock|incoming/)
    const moved = { ...spec, kernel: '/elsewhere/vmlinuz', initrd: '/elsewhere/initrd' }
    expect(snapshotKey(moved, ids)).toBe(snapshotKey(spec, ids))
    expect(snapshotKey({ ...spec, memoryMiB: 512 }, ids)).not.toBe(snapshotKey(spec, ids))
    expect(snapshotKey(spec, { ...ids, qemuId: 'other' })).not.toBe(snapshotKey(spec, ids))
  })

  it('puts the agent on a virtio-serial port when asked, and keys that snapshot apart', () => {
    const virtio = { ...spec, channel: 'virtio' as const }
    const args = machineArgs(virtio)
    expect(args).toEqual(expect.arrayContaining(['-device', 'virtio-serial-pci,id=oomlab-vs', '-device', 'virtserialport,bus=oomlab-vs.0,chardev=agent,name=oomlab']))
    expect(args).not.toContain('chardev:agent')
    expect(args[args.indexOf('-append') + 1]).toMatch(/ oomlab\.channel=virtio$/)
    expect(snapshotKey(virtio, ids)).not.toBe(snapshotKey(spec, ids))
  })
})

describe('the compressed guest image', () => {
  it('says in one line what to install when zstd is missing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'oomlab-zstdtest-'))
    const path = process.env.PATH
    try {
      mkdirSync(join(dir, 'initramfs'))
      writeFileSync(join(dir, 'initramfs', 'echo-0123456789abcdef.cpio'), 'not really a cpio')
      process.env.PATH = dir // no zstd there
      const image = { path: join(dir, 'initramfs', 'echo-0123456789abcdef.cpio'), hash: '0123456789abcdef', bytes: 17, reused: false, ms: 0 }
      const err = await zstdImage(dir, image).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(UserError)
      expect((err as Error).message).toBe('could not compress the guest image with zstd: zstd is not installed; install it with `apt-get install zstd` (or run `bash scripts/setup.sh`)')
      expect(readdirSync(join(dir, 'initramfs'))).toEqual(['echo-0123456789abcdef.cpio']) // no partial file left
    } finally {
      process.env.PATH = path
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
