/**
 * An initramfs being assembled: entries keyed by guest path, and how host files and programs (with the
 * shared libraries ldd names) get into it. What goes in is the recipes' (recipes.ts); writing and
 * caching the archive is the store's (store.ts).
 */
import { lstat, readlink, readdir, stat } from 'node:fs/promises'
import { realpathSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join, dirname, resolve } from 'node:path'
import { execa } from 'execa'
import type { CpioEntry } from './cpio.js'
import { UserError } from '../../util/errors.js'

/** An initramfs being assembled: entries keyed by guest path, parents first. */
export class ImageTree {
  readonly entries = new Map<string, CpioEntry>()

  dir(path: string, mode = 0o755, owner?: { uid: number; gid: number }): void {
    if (path === '/' || this.entries.has(path)) return
    this.dir(dirname(path))
    this.entries.set(path, { type: 'dir', path, mode, ...(owner && { uid: owner.uid, gid: owner.gid }) })
  }

  data(path: string, data: string | Buffer, mode = 0o644): void {
    this.dir(dirname(path))
    this.entries.set(path, { type: 'data', path, data, mode })
  }

  symlink(path: string, target: string): void {
    this.dir(dirname(path))
    if (!this.entries.has(path)) this.entries.set(path, { type: 'symlink', path, target })
  }

  chardev(path: string, major: number, minor: number, mode = 0o600): void {
    this.dir(dirname(path))
    this.entries.set(path, { type: 'chardev', path, major, minor, mode })
  }

  /** Copies a host file to `guestPath` (following symlinks on the host). */
  async file(hostPath: string, guestPath = hostPath): Promise<void> {
    const st = await stat(hostPath)
    this.dir(dirname(guestPath))
    this.entries.set(guestPath, { type: 'file', path: guestPath, source: hostPath, mode: st.mode, size: st.size })
  }

  /**
   * Adds a host path at the same place in the guest, reproducing every symlink on the way
   * (/lib -> usr/lib, /lib64/ld-linux-x86-64.so.2 -> ...), so that the dynamic loader finds it.
   */
  async hostPath(path: string, depth = 0): Promise<void> {
    if (depth > 40) throw new Error(`too many symlinks resolving ${path}`)
    const parts = resolve(path).split('/').filter(Boolean)
    let cur = ''
    for (let i = 0; i < parts.length; i++) {
      cur += `/${parts[i]}`
      const st = await lstat(cur)
      if (st.isSymbolicLink()) {
        const target = await readlink(cur)
        this.symlink(cur, target)
        const rest = parts.slice(i + 1).join('/')
        return this.hostPath(join(resolve(dirname(cur), target), rest), depth + 1)
      }
      if (i < parts.length - 1) this.dir(cur)
      else if (st.isDirectory()) this.dir(cur)
      else await this.file(cur)
    }
  }

  /**
   * Adds a program at `guestPath` and every shared library `ldd` names for it. With `root` (packages
   * unpacked there, as if installed at /), the program and its libraries are looked for there first and
   * go to their place below it; the rest (the C library) are the host's.
   */
  async program(hostPath: string, guestPath: string, root?: string): Promise<void> {
    await this.file(realpathSync(hostPath), this.canonical(guestPath))
    for (const lib of await sharedLibraries(hostPath, root)) {
      if (root !== undefined && lib.startsWith(`${root}/`)) await this.file(realpathSync(lib), this.canonical(lib.slice(root.length)))
      else await this.hostPath(lib)
    }
  }

  /**
   * A guest path with its folders' symlinks in this tree resolved (/lib/x/y is /usr/lib/x/y where /lib
   * links to usr/lib): a file from an unpacked package goes where the guest's loader will look.
   */
  canonical(path: string): string {
    const parts = path.split('/').filter(Boolean)
    let cur = ''
    for (let i = 0; i < parts.length - 1; i++) {
      cur += `/${parts[i]}`
      const e = this.entries.get(cur)
      if (e?.type === 'symlink') return this.canonical(join(e.target.startsWith('/') ? e.target : join(dirname(cur), e.target), ...parts.slice(i + 1)))
    }
    return path
  }

  /** Adds a host folder's contents under `guestDir`, keeping symlinks as they are. */
  async tree(hostDir: string, guestDir: string, skip: (rel: string) => boolean = () => false, rel = ''): Promise<void> {
    this.dir(guestDir)
    for (const e of await readdir(join(hostDir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name
      if (skip(r)) continue
      const host = join(hostDir, r)
      const guest = join(guestDir, r)
      if (e.isSymbolicLink()) this.symlink(guest, await readlink(host))
      else if (e.isDirectory()) await this.tree(hostDir, guestDir, skip, r)
      else if (e.isFile()) await this.file(host, guest)
    }
  }

  /** What the image's file contents add up to. */
  bytes(): number {
    let n = 0
    for (const e of this.entries.values()) n += e.type === 'file' ? e.size : e.type === 'data' ? Buffer.byteLength(e.data) : 0
    return n
  }

  /** A hash of everything that goes in: paths, modes, and each host file's size and mtime. */
  async hash(): Promise<string> {
    const h = createHash('sha256')
    // The writer's version: images of a writer that could interleave two images' file data are not reused.
    h.update('cpio 2\n')
    for (const e of this.entries.values()) {
      h.update(`${e.type} ${e.path}`)
      if (e.type === 'file') {
        const st = await stat(e.source)
        h.update(` ${e.source} ${e.mode} ${st.size} ${st.mtimeMs}`)
      } else if (e.type === 'data') h.update(createHash('sha256').update(e.data).digest('hex'))
      else if (e.type === 'symlink') h.update(e.target)
      h.update('\n')
    }
    return h.digest('hex').slice(0, 16)
  }
}

/**
 * Paths of the shared libraries a program loads, from `ldd`; none for a static program. With `root`,
 * libraries unpacked there come first. A library ldd cannot find, or one too old for the program, is
 * one line saying which.
 */
export async function sharedLibraries(program: string, root?: string): Promise<string[]> {
  const env = root === undefined ? undefined : { LD_LIBRARY_PATH: LIBRARY_DIRS.map((d) => join(root, d)).join(':') }
  const r = await execa('ldd', [program], { reject: false, ...(env && { env }) })
  if (r.exitCode !== 0) return [] // "not a dynamic executable"
  const text = `${String(r.stdout)}\n${String(r.stderr)}`
  const missing = text.split('\n').find((l) => /not found/.test(l))
  if (missing) throw new UserError(`${program} cannot run with this host's libraries (ldd: ${missing.trim()}); the guest image needs them: a newer host (Debian 12, Ubuntu 24.04), or install what is missing`)
  return parseLdd(String(r.stdout))
}

/** Where Debian puts shared libraries on amd64. */
const LIBRARY_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu']

export function parseLdd(text: string): string[] {
  const libs: string[] = []
  for (const line of text.split('\n')) {
    const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/)
    if (m?.[1]) libs.push(m[1])
  }
  return libs
}
