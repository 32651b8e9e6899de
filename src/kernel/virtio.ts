/**
 * The agent's fast channel: a virtio-serial port. Under TCG a request and its answer take 0.3-1 ms
 * there against 10-15 ms on the second 16550 UART, which QEMU emulates a byte at a time (README, "The
 * channel"). Debian builds virtio as modules in some kernels (bullseye, bookworm) and into others
 * (trixie): this finds which in a kernel's unpacked packages, and packs the modules a guest must
 * load into a small cpio that goes after its image (the kernel unpacks concatenated archives).
 */
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { writeCpio, type CpioEntry } from '../vm/image/cpio.js'

export type VirtioSupport =
  | { kind: 'builtin' }
  | { kind: 'modules'; modules: string[] }
  /** The agent talks over the UART. */
  | { kind: 'absent'; why: string }

/** In load order: each needs those before it. A kernel that lacks one (5.10 has no *_dev) skips it. */
export const VIRTIO_MODULES = ['virtio', 'virtio_ring', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_console'] as const

/** Where the guest's /init finds them: the modules, and their load order in `order`. */
export const GUEST_MODULES_DIR = 'oomlab-modules'

const SUFFIXES = ['.ko', '.ko.xz', '.ko.zst'] as const

export interface VirtioFound {
  support: VirtioSupport
  /** Module name to its file, for kind 'modules'. */
  files: Map<string, string>
}

/**
 * What the unpacked packages under `roots` say of virtio-serial; undefined when none of them holds a
 * modules.builtin (sid's linux-binary package carries the vmlinuz alone: its modules come in another).
 */
export async function findVirtio(roots: readonly string[]): Promise<VirtioFound | undefined> {
  let builtinList: Set<string> | undefined
  const files = new Map<string, string>()
  for (const root of roots) {
    for (const modulesDir of ['lib/modules', 'usr/lib/modules']) {
      for (const version of await readdir(join(root, modulesDir)).catch(() => [] as string[])) {
        const base = join(root, modulesDir, version)
        const builtin = await readFile(join(base, 'modules.builtin'), 'utf8').catch(() => undefined)
        if (builtin !== undefined) {
          builtinList ??= new Set()
          for (const line of builtin.split('\n')) if (line.trim()) builtinList.add(moduleName(line.trim()))
        }
        for (const sub of ['kernel/drivers/virtio', 'kernel/drivers/char']) {
          for (const f of await readdir(join(base, sub)).catch(() => [] as string[])) {
            const name = moduleName(f)
            if ((VIRTIO_MODULES as readonly string[]).includes(name) && SUFFIXES.some((s) => f.endsWith(s))) files.set(name, join(base, sub, f))
          }
        }
      }
    }
  }
  if (!builtinList) return undefined
  const has = (m: string) => builtinList!.has(m) || files.has(m)
  const missing = ['virtio', 'virtio_ring', 'virtio_pci', 'virtio_console'].filter((m) => !has(m))
  if (missing.length > 0) return { support: { kind: 'absent', why: `the kernel has neither built in nor as a module: ${missing.join(', ')}` }, files: new Map() }
  const modules = VIRTIO_MODULES.filter((m) => files.has(m) && !builtinList!.has(m))
  if (modules.length === 0) return { support: { kind: 'builtin' }, files: new Map() }
  return { support: { kind: 'modules', modules }, files: new Map(modules.map((m) => [m, files.get(m)!])) }
}

/** "kernel/drivers/char/virtio_console.ko" or "virtio_console.ko.xz" -> "virtio_console". */
function moduleName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1).replace(/\.ko(\.xz|\.zst)?$/, '')
}

/** Writes the modules (decompressed: busybox's insmod reads plain .ko) and their load order into a cpio at `out`. */
export async function writeModulesCpio(found: VirtioFound, out: string): Promise<number> {
  if (found.support.kind !== 'modules') throw new Error('no virtio modules to pack: the kernel has them built in, or not at all')
  const entries: CpioEntry[] = [{ type: 'dir', path: GUEST_MODULES_DIR }]
  for (const name of found.support.modules) entries.push({ type: 'data', path: `${GUEST_MODULES_DIR}/${name}.ko`, data: await plainModule(found.files.get(name)!) })
  entries.push({ type: 'data', path: `${GUEST_MODULES_DIR}/order`, data: `${found.support.modules.join('\n')}\n` })
  return writeCpio(out, entries)
}

async function plainModule(file: string): Promise<Buffer> {
  if (file.endsWith('.ko')) return readFile(file)
  const tool = file.endsWith('.xz') ? 'xz' : 'zstd'
  const r = await execa(tool, ['-dc', file], { encoding: 'buffer', reject: false, stdin: 'ignore' })
  if (r.failed) throw new Error(`could not decompress ${file} with ${tool}: ${r.code === 'ENOENT' ? `${tool} is not installed` : String(r.stderr).trim() || `exit ${r.exitCode}`}`)
  return Buffer.from(r.stdout)
}
