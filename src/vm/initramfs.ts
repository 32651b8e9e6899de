/**
 * The guest's userland as an initramfs, built from the host's own programs: a static busybox for
 * /init and the shell tools, node, stress-ng and setpriv with their shared libraries, and the
 * project with the packages its tests need. Cached by a hash of everything that goes in.
 */
import { appendFile, copyFile, lstat, readlink, readdir, stat, readFile, writeFile, mkdir, rename, unlink } from 'node:fs/promises'
import { realpathSync, createReadStream } from 'node:fs'
import { createHash } from 'node:crypto'
import { join, dirname, resolve, basename } from 'node:path'
import { execa } from 'execa'
import { file as tmpFile } from 'tmp-promise'
import { writeCpio, type CpioEntry } from './cpio.js'
import { IN_USE_MS } from './cache.js'
import { projectRoot, packageRoot, ownModule } from '../util/paths.js'
import { megabytes, type Progress } from '../util/progress.js'
import { UserError } from '../util/errors.js'
import { which } from '../util/which.js'
import { GUEST_BASELINE, GUEST_BUNDLE, GUEST_PROJECT, GUEST_USER } from './guest/layout.js'


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

  /** Adds a program at `guestPath` and every shared library `ldd` names for it. */
  async program(hostPath: string, guestPath: string): Promise<void> {
    await this.file(realpathSync(hostPath), guestPath)
    for (const lib of await sharedLibraries(hostPath)) await this.hostPath(lib)
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

/** Paths of the shared libraries a program loads, from `ldd`; none for a static program. */
export async function sharedLibraries(program: string): Promise<string[]> {
  const r = await execa('ldd', [program], { reject: false })
  if (r.exitCode !== 0) return [] // "not a dynamic executable"
  return parseLdd(String(r.stdout))
}

export function parseLdd(text: string): string[] {
  const libs: string[] = []
  for (const line of text.split('\n')) {
    const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/)
    if (m?.[1]) libs.push(m[1])
  }
  return libs
}

function hostProgram(name: string, pkg: string): string {
  const p = which(name)
  if (p) return p
  throw new UserError(`${name} is missing on the host: the guest is built from the host's programs; install it with \`apt-get install ${pkg}\``)
}

export async function staticBusybox(): Promise<string> {
  const bb = process.env.OOMLAB_BUSYBOX ?? hostProgram('busybox', 'busybox-static')
  if ((await sharedLibraries(bb)).length > 0)
    throw new UserError(`${bb} is dynamically linked; the guest's /init needs a static busybox: \`apt-get install busybox-static\``)
  return bb
}

/** Every shared object of the host's C library package: node's native parts load more of glibc than ldd lists. */
async function glibcObjects(): Promise<string[]> {
  const r = await execa('dpkg', ['-L', 'libc6'], { reject: false })
  if (r.exitCode !== 0) return []
  const files: string[] = []
  for (const p of String(r.stdout).split('\n'))
    if (/\.so(\.\d+)*$/.test(p) && (await lstat(p).then((s) => s.isFile() || s.isSymbolicLink(), () => false))) files.push(p)
  return files
}

/**
 * The agent and the experiment specs, compiled and bundled on the host: under TCG, node is ~15x slower
 * than natively, and transforming TypeScript in the guest cost more than the experiments themselves.
 * Shared harness code goes into chunks, so the specs see one Lab module; vitest stays a package import.
 */
export async function bundleGuest(agent: 'vitest' | 'lab' = 'vitest'): Promise<Map<string, string>> {
  const { build } = await import('esbuild')
  const specs = (await readdir(join(projectRoot, 'experiments'))).filter((f) => f.endsWith('.spec.ts')).sort()
  const entryPoints: Record<string, string> =
    agent === 'vitest'
      ? { agent: join(projectRoot, 'src/vm/guest/main.ts') }
      : { agent: join(projectRoot, 'src/vm/guest/serve.ts'), 'faults-runner': join(projectRoot, 'src/vm/guest/faults-runner.ts') }
  for (const f of specs) entryPoints[`experiments/${f.replace(/\.ts$/, '')}`] = join(projectRoot, 'experiments', f)
  // The fault tests that need a kernel of their own (oomlab soak).
  for (const f of (await readdir(join(projectRoot, 'test/guest'))).filter((x) => x.endsWith('.ts')))
    entryPoints[`guest-tests/${f.replace(/\.ts$/, '')}`] = join(projectRoot, 'test/guest', f)
  const out = await build({
    entryPoints,
    outdir: GUEST_BUNDLE,
    outExtension: { '.js': '.mjs' },
    chunkNames: '[name]-[hash]',
    bundle: true,
    splitting: true,
    write: false,
    absWorkingDir: projectRoot,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['vitest', 'vitest/*'],
    logLevel: 'silent',
    // Bundled CommonJS packages (tmp-promise) still call require().
    banner: { js: "import { createRequire as __oomlabRequire } from 'node:module'; const require = __oomlabRequire(import.meta.url);" },
  })
  return new Map(out.outputFiles.map((f) => [f.path, f.text]))
}

/**
 * The packages the guest loads: vitest and what it depends on, without peer dependencies (tsx, esbuild,
 * typescript) and without lightningcss, which vite imports only to process CSS.
 */
export async function guestPackages(nodeModules: string, roots = ['vitest']): Promise<string[]> {
  const seen = new Set<string>()
  const queue = [...roots]
  while (queue.length > 0) {
    const name = queue.pop()!
    if (seen.has(name) || LAZY_PACKAGES.test(name)) continue
    const manifest = await readFile(join(nodeModules, name, 'package.json'), 'utf8').catch(() => undefined)
    if (manifest === undefined) continue // an optional dependency for another platform
    seen.add(name)
    const p = JSON.parse(manifest) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> }
    queue.push(...Object.keys({ ...p.dependencies, ...p.optionalDependencies }))
  }
  return [...seen].sort()
}

const LAZY_PACKAGES = /^lightningcss/

/**
 * The agent alone, for a lab guest: the host runs vitest and the specs, the guest only serves its Os.
 * One file: under TCG every module node loads costs ~15 times what it does natively.
 */
export async function bundleAgent(): Promise<Map<string, string>> {
  const { build } = await import('esbuild')
  const out = await build({
    entryPoints: { agent: ownModule('src/vm/guest/serve') },
    outdir: GUEST_BUNDLE,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    write: false,
    // Paths in the bundle's comments are relative to this: the image is the same from any folder.
    absWorkingDir: projectRoot,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'silent',
    banner: { js: "import { createRequire as __oomlabRequire } from 'node:module'; const require = __oomlabRequire(import.meta.url);" },
  })
  return new Map(out.outputFiles.map((f) => [f.path, f.text]))
}

/**
 * experiments/article.sh, the article's experiments as a plain script, at `path` in the guest: by content,
 * so a fresh checkout (new mtimes) makes the same image, and CI's cache of it holds.
 */
async function addBaseline(t: ImageTree, path: string): Promise<void> {
  t.data(path, await readFile(join(projectRoot, 'experiments/article.sh')), 0o755)
}

/** A lab guest's userland: busybox, node with the agent, stress-ng, setpriv, nohup; no vitest, no specs. */
export async function labTree(): Promise<ImageTree> {
  const t = await userland({ allOfGlibc: false })
  for (const [path, text] of await bundleAgent()) t.data(path, text)
  // The bench's baseline, run by the agent in a restored guest.
  await addBaseline(t, GUEST_BASELINE)
  return t
}

/**
 * The bench's minimal guest: the article's experiments as a plain shell script, no node. /init runs
 * scenarios 1-3, says hello and the result on the second serial port (as bootGuest expects), powers off.
 */
export async function shellGuestTree(): Promise<ImageTree> {
  const t = new ImageTree()
  for (const d of ['/proc', '/sys', '/dev', '/tmp', '/usr/bin']) t.dir(d)
  t.chardev('/dev/console', 5, 1)
  const busybox = await staticBusybox()
  await t.file(busybox, '/bin/busybox')
  for (const a of String((await execa(busybox, ['--list'])).stdout).split('\n').filter(Boolean)) t.symlink(`/bin/${a}`, 'busybox')
  await t.program(hostProgram('stress-ng', 'stress-ng'), '/usr/bin/stress-ng')
  await t.program(hostProgram('setpriv', 'util-linux'), '/usr/bin/setpriv')
  await t.program(hostProgram('nohup', 'coreutils'), '/usr/bin/nohup')
  t.data('/etc/passwd', `root:x:0:0:root:/root:/bin/sh\n${GUEST_USER.name}:x:${GUEST_USER.uid}:${GUEST_USER.gid}::/tmp:/bin/sh\n`)
  await addBaseline(t, '/article.sh')
  const frame = (f: object) => `OOMLAB ${JSON.stringify(f)}`
  t.data(
    '/init',
    [
      '#!/bin/sh',
      'export PATH=/usr/bin:/bin',
      'mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev; mount -t tmpfs tmpfs /tmp',
      'mount -t cgroup2 cgroup2 /sys/fs/cgroup; echo +memory > /sys/fs/cgroup/cgroup.subtree_control',
      'stty -F /dev/ttyS1 raw -echo',
      `echo '${frame({ type: 'hello', release: 'shell', version: 'shell', uptimeMs: 0 })}' > /dev/ttyS1`,
      'rc=0; for n in 1 2 3; do sh /article.sh $n || rc=$n; done',
      `printf '%s\\n' '${frame({ type: 'result', exitCode: 0, passed: 0, failed: 0, skipped: 0, vitestMs: 0, uptimeMs: 0, leftovers: [] }).replace('"exitCode":0', '"exitCode":RC')}' | sed "s/RC/$rc/" > /dev/ttyS1`,
      'reboot -f',
      '',
    ].join('\n'),
    0o755,
  )
  return t
}

/**
 * The lab guest's image, found without assembling it when nothing it is made of changed: a key from the
 * modification times of what goes in (the host's package database, node, the project's sources and
 * lock file) names the image built last time. Assembling the tree costs ~1 s (ldd, dpkg, bundling).
 */
export async function labImage(cache: string, progress?: Progress): Promise<Initramfs> {
  const t0 = performance.now()
  const key = await quickKey()
  const note = join(cache, 'initramfs', `lab-inputs-${key}`)
  const known = await readFile(note, 'utf8').catch(() => undefined)
  if (known && (await checkImage(known.trim())) === undefined) {
    const path = known.trim()
    return { path, hash: basename(path).replace(/^lab-|\.cpio$/g, ''), bytes: (await stat(path)).size, reused: true, ms: performance.now() - t0 }
  }
  progress?.('image', 'guest image: bundling the agent, collecting its programs')
  const image = await buildInitramfs(cache, await labTree(), 'lab', progress)
  await writeFile(note, `${image.path}\n`)
  return { ...image, ms: performance.now() - t0 }
}

async function quickKey(): Promise<string> {
  const h = createHash('sha256')
  const sources = async (dir: string): Promise<string[]> =>
    (await readdir(join(projectRoot, dir), { recursive: true })).map((f) => join(projectRoot, dir, String(f)))
  const inputs = ['/var/lib/dpkg/status', process.execPath, join(projectRoot, 'package-lock.json'), ...(await sources('src'))]
  for (const f of inputs.sort()) {
    const st = await stat(f).catch(() => undefined)
    h.update(`${f} ${st?.size} ${st?.mtimeMs}\n`)
  }
  h.update(`${process.env.OOMLAB_BUSYBOX ?? ''} ${process.env.PATH ?? ''}`)
  return h.digest('hex').slice(0, 16)
}

/** What every guest has: /init, busybox, node, the workload's programs and their libraries. */
async function userland(o: { allOfGlibc: boolean }): Promise<ImageTree> {
  const t = new ImageTree()
  for (const d of ['/bin', '/usr/bin', '/proc', '/sys', '/dev', '/run', '/root', '/etc']) t.dir(d)
  t.dir('/tmp', 0o1777)
  t.dir(`/home/${GUEST_USER.name}`, 0o755, GUEST_USER)
  t.chardev('/dev/console', 5, 1)
  t.chardev('/dev/null', 1, 3, 0o666)

  const busybox = await staticBusybox()
  await t.file(busybox, '/bin/busybox')
  const applets = String((await execa(busybox, ['--list'])).stdout).split('\n').filter(Boolean)
  for (const a of applets) t.symlink(`/bin/${a}`, 'busybox')

  await t.program(process.execPath, '/usr/bin/node')
  await t.program(hostProgram('stress-ng', 'stress-ng'), '/usr/bin/stress-ng')
  // util-linux's setpriv: busybox's cannot change uid.
  await t.program(hostProgram('setpriv', 'util-linux'), '/usr/bin/setpriv')
  // coreutils' nohup: Debian's busybox has none.
  await t.program(hostProgram('nohup', 'coreutils'), '/usr/bin/nohup')
  // Native addons (vitest's guest) load more of glibc than ldd lists; the agent alone does not (8 MB of gconv).
  if (o.allOfGlibc) for (const so of await glibcObjects()) await t.hostPath(so)

  t.data('/etc/passwd', `root:x:0:0:root:/root:/bin/sh\n${GUEST_USER.name}:x:${GUEST_USER.uid}:${GUEST_USER.gid}::/home/${GUEST_USER.name}:/bin/sh\n`)
  t.data('/etc/group', `root:x:0:\n${GUEST_USER.name}:x:${GUEST_USER.gid}:\n`)
  // vitest resolves localhost: without these it fails with EAI_AGAIN.
  t.data('/etc/hosts', '127.0.0.1 localhost\n::1 localhost\n')
  t.data('/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files\n')
  t.data('/etc/oomlab-guest', 'This system is an oom-group-lab guest.\n')
  t.data('/init', await readFile(join(projectRoot, 'src/vm/guest/init.sh')), 0o755)
  return t
}

/**
 * The guest that runs vitest and the specs itself. With the vitest agent it runs them at boot (the
 * boot-per-run design, kept for the VM runner's fault checks); with the lab agent it is a CI runner with
 * cgroup v2 to snapshot and restore: the native fault tests run in it by `oomlab soak` (faults-runner).
 */
export async function guestTree(agent: 'vitest' | 'lab' = 'vitest'): Promise<ImageTree> {
  const t = await userland({ allOfGlibc: true })
  for (const [path, text] of await bundleGuest(agent)) t.data(path, text)
  await t.file(join(projectRoot, 'package.json'), join(GUEST_PROJECT, 'package.json'))
  await addBaseline(t, GUEST_BASELINE)
  const nodeModules = join(projectRoot, 'node_modules')
  const roots = ['vitest']
  if (agent === 'lab') {
    // The CLI as npm installs it: the compiled package (`npm run build` made dist/) and what it imports.
    const installed = join(GUEST_PROJECT, 'node_modules', 'oom-group-lab')
    await t.file(join(packageRoot, 'package.json'), join(installed, 'package.json'))
    await t.tree(join(packageRoot, 'bin'), join(installed, 'bin'))
    await t.tree(join(packageRoot, 'dist'), join(installed, 'dist'), (rel) => rel.endsWith('.d.ts'))
    roots.push('execa', 'tmp-promise', 'birpc')
  }
  for (const pkg of await guestPackages(nodeModules, roots)) await t.tree(join(nodeModules, pkg), join(GUEST_PROJECT, 'node_modules', pkg))
  return t
}

export interface Initramfs {
  path: string
  hash: string
  bytes: number
  /** True when an image with the same inputs was already in the cache. */
  reused: boolean
  /** Why the cached image with these inputs was not used (cut short, damaged). */
  rebuiltBecause?: string
  ms: number
}

/** Images being built by this process, by path: a matrix's kernels, prepared at once, share one build. */
const building = new Map<string, Promise<Initramfs>>()

/** Builds the image into the cache, or reuses the one with the same hash. Keeps the newest few. */
export async function buildInitramfs(cache: string, tree: ImageTree, name = 'guest', progress?: Progress): Promise<Initramfs> {
  const dir = join(cache, 'initramfs')
  await mkdir(dir, { recursive: true })
  const path = join(dir, `${name}-${await tree.hash()}.cpio`)
  return ensureImage(path, {
    hash: basename(path).slice(name.length + 1, -'.cpio'.length),
    about: ` (~${Math.round(tree.bytes() / 1e6)} MB)`,
    write: (tmp) => writeCpio(tmp, tree.entries.values(), (n) => progress?.('image', `guest image: writing ${basename(path)}, ${megabytes(n)}`)),
    made: () => pruneOldImages(dir, name, basename(path)),
  })
}

/**
 * The image compressed with zstd, for kernels that unpack it (see zstdInitrd). The kernel frees the
 * initrd's pages once it has unpacked them and fills them with a poison byte, so they are not zero and
 * every snapshot's state holds them: 42 MB compressed instead of 130 MB takes ~90 MB off each state,
 * which every restore loads. Made beside the image, checked like it; named after it with a "z".
 */
export async function zstdImage(cache: string, image: Initramfs): Promise<Initramfs> {
  const hash = createHash('sha256').update(image.hash).update(ZSTD_ARGS.join(' ')).digest('hex').slice(0, 16)
  const name = `${basename(image.path).replace(/-[0-9a-f]{16}\.cpio$/, '')}z`
  return ensureImage(join(cache, 'initramfs', `${name}-${hash}.cpio`), {
    hash,
    about: '',
    write: async (tmp) => {
      // To stdout: given an output file, zstd would copy the image's times onto it.
      const r = await execa('zstd', [...ZSTD_ARGS, '-c', image.path], { reject: false, stdin: 'ignore', stdout: { file: tmp } })
      if (r.failed) throw new UserError(`could not compress the guest image with zstd: ${r.code === 'ENOENT' ? 'zstd is not installed; install it with `apt-get install zstd` (or run `bash scripts/setup.sh`)' : String(r.stderr).trim() || `exit ${r.exitCode}`}`)
    },
  })
}

/** Level 3 (zstd's default), on all cores. */
const ZSTD_ARGS = ['-q', '-3', '-T0']

/**
 * Whether a kernel unpacks a zstd initramfs: CONFIG_RD_ZSTD, in Linux since 5.9 and set in Debian's
 * kernels (bullseye's 5.10 and every later one boot it). A kernel given by path may lack it: its image stays plain.
 */
export function zstdInitrd(kernel: { source: 'debian' | 'file'; release: string }): boolean {
  const [major = 0, minor = 0] = kernel.release.split(/[.-]/).map(Number)
  return kernel.source === 'debian' && (major > 5 || (major === 5 && minor >= 9))
}

/**
 * The image with a kernel's virtio modules appended as a second archive (the kernel unpacks both): one
 * file per image and modules, as QEMU takes one -initrd. Made beside the image, checked like it.
 */
export async function imageWithModules(cache: string, image: Initramfs, modulesCpio: string): Promise<Initramfs> {
  const modules = await readFile(modulesCpio)
  const hash = createHash('sha256').update(image.hash).update(modules).update('aligned').digest('hex').slice(0, 16)
  return ensureImage(join(cache, 'initramfs', `labmod-${hash}.cpio`), {
    hash,
    about: '',
    write: async (tmp) => {
      await copyFile(image.path, tmp)
      // The kernel takes a plain archive only at a 4-byte boundary ("invalid magic at start of compressed
      // archive" otherwise, and the rest is lost); zeros between archives are skipped. A plain image
      // ends aligned, a compressed one anywhere.
      await appendFile(tmp, Buffer.alloc((4 - (image.bytes % 4)) % 4))
      await appendFile(tmp, modules)
    },
  })
}

interface ImageRecipe {
  hash: string
  /** After "for the guest image" in a full disk's message, e.g. " (~137 MB)". */
  about: string
  write: (tmp: string) => Promise<unknown>
  /** After a new image is in place. */
  made?: () => Promise<void>
}

/**
 * The image at `path`: reused when whole (checkImage), else written by `write` into a temp file beside it
 * and renamed into place. One build per path in this process (a matrix's kernels, prepared at once, share it).
 */
function ensureImage(path: string, o: ImageRecipe): Promise<Initramfs> {
  const pending = building.get(path) ?? makeImage(path, o).finally(() => building.delete(path))
  building.set(path, pending)
  return pending
}

async function makeImage(path: string, o: ImageRecipe): Promise<Initramfs> {
  const t0 = performance.now()
  const { hash } = o
  const problem = await checkImage(path)
  if (problem === undefined) return { path, hash, bytes: (await stat(path)).size, reused: true, ms: performance.now() - t0 }
  const dir = dirname(path)
  const tmp = await tmpFile({ tmpdir: dir, prefix: `.${basename(path, '.cpio')}-`, postfix: '.partial' })
  try {
    await o.write(tmp.path)
    // The record goes last: an image without one is rebuilt, so a crash in between costs a rebuild only.
    const sum = await sha256File(tmp.path)
    await rename(tmp.path, path)
    const st = await stat(path)
    await writeFile(`${path}.sha256`, `${sum}  ${st.size}  ${st.mtimeMs}\n`)
    await o.made?.()
    return { path, hash, bytes: st.size, reused: false, ms: performance.now() - t0, ...(problem !== 'absent' && { rebuiltBecause: problem }) }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new UserError(`no space left in ${dir} for the guest image${o.about}: free some, or point OOMLAB_CACHE_DIR elsewhere`, 1)
    throw err
  } finally {
    await tmp.cleanup().catch(() => undefined)
  }
}

/**
 * undefined when the cached image is whole, else why not ('absent' if missing). Cheap on each use: the
 * size and modification time recorded when it was built; only a file touched since is hashed again.
 */
export async function checkImage(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined)
  if (!st) return 'absent'
  const record = (await readFile(`${path}.sha256`, 'utf8').catch(() => '')).trim().split(/\s+/)
  if (record.length !== 3) return `${basename(path)} has no checksum record`
  if (Number(record[1]) !== st.size) return `${basename(path)} is ${st.size} bytes, ${record[1]} expected (cut short?)`
  if (Number(record[2]) === st.mtimeMs) return undefined
  if ((await sha256File(path)) !== record[0]) return `${basename(path)} does not match its sha256 (damaged)`
  await writeFile(`${path}.sha256`, `${record[0]}  ${record[1]}  ${st.mtimeMs}\n`)
  return undefined
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}

/**
 * Removes this name's older images but the newest two, and never one used within the hour: another
 * run (another checkout of the project) may be booting from it.
 */
export async function pruneOldImages(dir: string, name: string, keep: string): Promise<void> {
  const images = (await readdir(dir)).filter((f) => f.startsWith(`${name}-`) && f.endsWith('.cpio') && f !== keep)
  const withTimes = await Promise.all(
    images.map(async (f) => {
      const made = (await stat(join(dir, f))).mtimeMs
      const used = (await stat(join(dir, `${f}.used`)).catch(() => undefined))?.mtimeMs ?? made
      return { f, made, used }
    }),
  )
  withTimes.sort((a, b) => b.made - a.made)
  const now = Date.now()
  for (const { f, used } of withTimes.slice(2)) {
    if (now - used < IN_USE_MS) continue
    for (const p of [f, `${f}.sha256`, `${f}.used`]) await unlink(join(dir, p)).catch(() => undefined)
  }
}
