/**
 * What goes into each guest image, built from the host's own programs: a static busybox for /init and
 * the shell tools, node, stress-ng, setpriv and nohup with their shared libraries.
 *   - the lab guest: the agent alone (the host runs vitest and the specs);
 *   - the lab guest with an addition a caller hands over as data (ImageAddition: e.g. vitest, the
 *     package as npm installs it and tests bundled from a folder, for a CI runner with cgroup v2; or
 *     container runtimes from Debian's packages);
 *   - the bench's shell guest: the article's script run by /init, no node;
 *   - the accelerator probe: busybox alone.
 */
import { lstat, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { basename, join } from 'node:path'
import { execa } from 'execa'
import { ImageTree, sharedLibraries } from './tree.js'
import { bundleAgent, bundleFolder, packagesWithDependencies } from './bundle.js'
import { buildInitramfs, checkImage, type Initramfs } from './store.js'
import { unpackedPackages, type UnpackContext } from './debian.js'
import { projectRoot, packageRoot } from '../../util/paths.js'
import type { Progress } from '../../util/progress.js'
import { UserError } from '../../util/errors.js'
import { which } from '../../util/which.js'
import { GUEST_BASELINE, GUEST_BUNDLE, GUEST_PROJECT, GUEST_USER } from '../in-guest/layout.js'

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

/** busybox at /bin/busybox with every applet linked to it. */
async function addBusybox(t: ImageTree): Promise<string> {
  const busybox = await staticBusybox()
  await t.file(busybox, '/bin/busybox')
  for (const a of String((await execa(busybox, ['--list'])).stdout).split('\n').filter(Boolean)) t.symlink(`/bin/${a}`, 'busybox')
  return busybox
}

/** The article's workload: stress-ng, util-linux's setpriv (busybox's cannot change uid), coreutils' nohup (Debian's busybox has none). */
async function addWorkloadPrograms(t: ImageTree): Promise<void> {
  await t.program(hostProgram('stress-ng', 'stress-ng'), '/usr/bin/stress-ng')
  await t.program(hostProgram('setpriv', 'util-linux'), '/usr/bin/setpriv')
  await t.program(hostProgram('nohup', 'coreutils'), '/usr/bin/nohup')
}

/**
 * experiments/article.sh, the article's experiments as a plain script, at `path` in the guest: by content,
 * so a fresh checkout (new mtimes) makes the same image, and CI's cache of it holds.
 */
async function addArticleScript(t: ImageTree, path: string): Promise<void> {
  t.data(path, await readFile(join(projectRoot, 'experiments/article.sh')), 0o755)
}

/** What every node guest has: /init, busybox, node, the workload's programs and their libraries. */
async function userland(o: { allOfGlibc: boolean }): Promise<ImageTree> {
  const t = new ImageTree()
  for (const d of ['/bin', '/usr/bin', '/proc', '/sys', '/dev', '/run', '/root', '/etc']) t.dir(d)
  t.dir('/tmp', 0o1777)
  t.dir(`/home/${GUEST_USER.name}`, 0o755, GUEST_USER)
  t.chardev('/dev/console', 5, 1)
  t.chardev('/dev/null', 1, 3, 0o666)
  await addBusybox(t)
  await t.program(process.execPath, '/usr/bin/node')
  await addWorkloadPrograms(t)
  // Native addons (vitest's) load more of glibc than ldd lists; the agent alone does not (8 MB of gconv).
  if (o.allOfGlibc) for (const so of await glibcObjects()) await t.hostPath(so)

  t.data('/etc/passwd', `root:x:0:0:root:/root:/bin/sh\n${GUEST_USER.name}:x:${GUEST_USER.uid}:${GUEST_USER.gid}::/home/${GUEST_USER.name}:/bin/sh\n`)
  t.data('/etc/group', `root:x:0:\n${GUEST_USER.name}:x:${GUEST_USER.gid}:\n`)
  // vitest resolves localhost: without these it fails with EAI_AGAIN.
  t.data('/etc/hosts', '127.0.0.1 localhost\n::1 localhost\n')
  t.data('/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files\n')
  t.data('/etc/oomlab-guest', 'This system is an oom-group-lab guest.\n')
  t.data('/init', await readFile(join(projectRoot, 'src/vm/in-guest/init.sh')), 0o755)
  return t
}

/** A lab guest's userland: busybox, node with the agent, stress-ng, setpriv, nohup; no vitest, no specs. */
export async function labTree(): Promise<ImageTree> {
  const t = await userland({ allOfGlibc: false })
  for (const [path, text] of await bundleAgent()) t.data(path, text)
  // The bench's baseline, run by the agent in a restored guest.
  await addArticleScript(t, GUEST_BASELINE)
  return t
}

/**
 * The lab guest's image, found without assembling it when nothing it is made of changed: a key from the
 * modification times of what goes in (the host's package database, node, the project's sources and
 * lock file) names the image built last time. Assembling the tree costs ~1 s (ldd, dpkg, bundling).
 */
export async function labImage(cache: string, progress?: Progress): Promise<Initramfs> {
  return knownImage(cache, 'lab', '', progress, async () => {
    progress?.('image', 'guest image: bundling the agent, collecting its programs')
    return labTree()
  })
}

/**
 * The image named `name` built last time from the same inputs (quickKey, plus `more`), else the tree
 * `assemble` makes, built. A note in the cache maps the inputs' key to the image's path.
 */
async function knownImage(cache: string, name: string, more: string, progress: Progress | undefined, assemble: () => Promise<ImageTree>): Promise<Initramfs> {
  const t0 = performance.now()
  const key = createHash('sha256').update(await quickKey()).update(more).digest('hex').slice(0, 16)
  const note = join(cache, 'initramfs', `${name}-inputs-${key}`)
  const known = await readFile(note, 'utf8').catch(() => undefined)
  if (known && (await checkImage(known.trim())) === undefined) {
    const path = known.trim()
    return { path, hash: basename(path).replace(new RegExp(`^${name}-|\\.cpio$`, 'g'), ''), bytes: (await stat(path)).size, reused: true, ms: performance.now() - t0 }
  }
  const image = await buildInitramfs(cache, await assemble(), name, progress)
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

/**
 * What a caller adds to the lab guest's image, as data (a JSON file of its own, or a constant): the
 * harness's image builder never names the caller's files. Paths are relative to the project root.
 */
export interface ImageAddition {
  /** The image's name in the cache. */
  name: string
  /** Every .ts file of `from` bundled into the guest's `${GUEST_BUNDLE}/${to}`; `external` packages stay imports. */
  bundle?: { from: string; to: string; external: string[] }
  /** node_modules packages the guest carries under /oomlab/node_modules, with their dependencies. */
  packages?: string[]
  /** The package as npm installs it (package.json, bin/, dist/ from `npm run build`), under /oomlab/node_modules. */
  installedPackage?: boolean
  /** Programs from Debian's packages, unpacked into the cache (debian.ts), not taken from the host. */
  debian?: DebianAddition
  /** The guest's memory and vCPUs, unless the run says otherwise. */
  machine: { memoryMiB: number; cpus: number }
}

export interface DebianAddition {
  suite: string
  /** Fetched with the libraries they depend on. */
  packages: string[]
  /** Their programs the guest carries, by path, with the libraries ldd names. */
  programs: string[]
  /** Other files of theirs the guest carries (a program's helper). */
  files: string[]
  /** Empty folders the programs expect (their state and lock folders). */
  dirs: string[]
}

/**
 * The lab guest with an addition: the agent, the addition's bundle, node packages and Debian programs.
 * Node packages' native addons load more of glibc than ldd lists: with packages, all of it.
 */
export async function additionTree(a: ImageAddition, o: UnpackContext): Promise<ImageTree> {
  const packages = a.packages ?? []
  const t = await userland({ allOfGlibc: packages.length > 0 })
  for (const [path, text] of await bundleAgent()) t.data(path, text)
  await addArticleScript(t, GUEST_BASELINE)
  if (a.bundle) for (const [path, text] of await bundleFolder(join(projectRoot, a.bundle.from), join(GUEST_BUNDLE, a.bundle.to), a.bundle.external)) t.data(path, text)
  if (a.bundle || packages.length > 0 || a.installedPackage) await t.file(join(projectRoot, 'package.json'), join(GUEST_PROJECT, 'package.json'))
  const nodeModules = join(projectRoot, 'node_modules')
  if (a.installedPackage) {
    const installed = join(GUEST_PROJECT, 'node_modules', 'oom-group-lab')
    await t.file(join(packageRoot, 'package.json'), join(installed, 'package.json'))
    await t.tree(join(packageRoot, 'bin'), join(installed, 'bin'))
    await t.tree(join(packageRoot, 'dist'), join(installed, 'dist'), (rel) => rel.endsWith('.d.ts'))
  }
  for (const pkg of await packagesWithDependencies(nodeModules, packages)) await t.tree(join(nodeModules, pkg), join(GUEST_PROJECT, 'node_modules', pkg))
  if (a.debian) await addDebianPrograms(t, a.debian, o)
  return t
}

async function addDebianPrograms(t: ImageTree, d: DebianAddition, o: UnpackContext): Promise<void> {
  const unpacked = await unpackedPackages({ suite: d.suite, packages: d.packages }, o)
  const inRoot = (p: string) => join(unpacked.root, p)
  for (const p of d.programs) await t.program(inRoot(p), p, unpacked.root)
  for (const f of d.files) await t.file(inRoot(f), t.canonical(f))
  for (const dir of d.dirs) t.dir(t.canonical(dir))
  t.data('/etc/oomlab-debian-packages', `${unpacked.packages.join('\n')}\n`)
}

/**
 * The image of an addition, found like the lab's (knownImage) when the addition and what it is made of
 * are unchanged; a Debian addition's packages are looked up (in the cache, else on the mirror) first.
 */
export async function additionImage(a: ImageAddition, o: UnpackContext): Promise<Initramfs> {
  const debs = a.debian ? (await unpackedPackages({ suite: a.debian.suite, packages: a.debian.packages }, o)).packages : []
  const more = JSON.stringify({ a, debs, bundle: a.bundle ? await folderStamp(join(projectRoot, a.bundle.from)) : '' })
  return knownImage(o.cache, a.name, more, o.progress, async () => {
    o.progress?.('image', `guest image ${a.name}: collecting its programs`)
    return additionTree(a, o)
  })
}

/** Names, sizes and times of a folder's files: a bundle's sources. */
async function folderStamp(dir: string): Promise<string> {
  const files = (await readdir(dir, { recursive: true })).map(String).sort()
  const stamps = await Promise.all(files.map(async (f) => `${f} ${(await stat(join(dir, f))).mtimeMs}`))
  return stamps.join('\n')
}

/** An image addition from parsed JSON, checked field by field: a wrong one says which field of `where`. */
export function parseImageAddition(value: unknown, where: string): ImageAddition {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Partial<ImageAddition>
  const strings = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === 'string')
  const bad = (field: string) => new UserError(`${where}: ${field} is missing or of the wrong type`)
  if (typeof v.name !== 'string' || !/^[a-z][a-z0-9-]*$/.test(v.name)) throw bad('name (lower-case letters, digits and dashes)')
  if (v.bundle !== undefined && (typeof v.bundle?.from !== 'string' || typeof v.bundle.to !== 'string' || !strings(v.bundle.external))) throw bad('bundle {from, to, external}')
  if (v.packages !== undefined && !strings(v.packages)) throw bad('packages')
  if (v.installedPackage !== undefined && typeof v.installedPackage !== 'boolean') throw bad('installedPackage')
  const d = v.debian
  if (d !== undefined && (typeof d?.suite !== 'string' || !strings(d.packages) || !strings(d.programs) || !strings(d.files) || !strings(d.dirs))) throw bad('debian {suite, packages, programs, files, dirs}')
  if (!Number.isInteger(v.machine?.memoryMiB) || !Number.isInteger(v.machine?.cpus)) throw bad('machine {memoryMiB, cpus}')
  return {
    name: v.name,
    ...(v.bundle !== undefined && { bundle: { from: v.bundle.from, to: v.bundle.to, external: v.bundle.external } }),
    ...(v.packages !== undefined && { packages: v.packages }),
    ...(v.installedPackage !== undefined && { installedPackage: v.installedPackage }),
    ...(d !== undefined && { debian: { suite: d.suite, packages: d.packages, programs: d.programs, files: d.files, dirs: d.dirs } }),
    machine: { memoryMiB: v.machine!.memoryMiB, cpus: v.machine!.cpus },
  }
}

/** How the shell guest's /init says how the script ended, on the console: `oomlab-shell exit=N`. */
export const SHELL_GUEST_EXIT = /^oomlab-shell exit=(\d+)$/m

/**
 * The bench's shell guest, no node: /init runs the article's scenarios 1-3 as a plain script, says how
 * they ended on the console and powers off (QEMU, started with -no-reboot, exits).
 */
export async function shellGuestTree(): Promise<ImageTree> {
  const t = new ImageTree()
  for (const d of ['/proc', '/sys', '/dev', '/tmp', '/usr/bin']) t.dir(d)
  t.chardev('/dev/console', 5, 1)
  await addBusybox(t)
  await addWorkloadPrograms(t)
  t.data('/etc/passwd', `root:x:0:0:root:/root:/bin/sh\n${GUEST_USER.name}:x:${GUEST_USER.uid}:${GUEST_USER.gid}::/tmp:/bin/sh\n`)
  await addArticleScript(t, '/article.sh')
  t.data(
    '/init',
    [
      '#!/bin/sh',
      'export PATH=/usr/bin:/bin',
      'mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev; mount -t tmpfs tmpfs /tmp',
      'mount -t cgroup2 cgroup2 /sys/fs/cgroup; echo +memory > /sys/fs/cgroup/cgroup.subtree_control',
      'rc=0; for n in 1 2 3; do sh /article.sh $n || rc=$n; done',
      'echo "oomlab-shell exit=$rc"',
      'reboot -f',
      '',
    ].join('\n'),
    0o755,
  )
  return t
}

/** What the probe guest's /init prints on the console before it powers off. */
export const PROBE_HELLO = 'oomlab-probe: booted'

/** The accelerator probe: busybox alone; /init says PROBE_HELLO on the console and powers off. */
export async function probeTree(): Promise<ImageTree> {
  const t = new ImageTree()
  await t.file(await staticBusybox(), '/bin/busybox')
  for (const a of ['sh', 'echo', 'reboot']) t.symlink(`/bin/${a}`, 'busybox')
  t.dir('/proc')
  t.dir('/dev')
  t.chardev('/dev/console', 5, 1)
  t.data('/init', `#!/bin/sh\necho '${PROBE_HELLO}'\nreboot -f\n`, 0o755)
  return t
}
