/**
 * A kernel from a source tree (or its tarball): configured out of tree (the build folder is in the cache,
 * nothing is written into the tree) from the tree's own x86_64_defconfig with the project's fragment
 * (guest.config) merged over it, `make bzImage` on every core, and kept by the key of what decided it.
 * A tree built before reuses its kernel without running make; a changed tree is built again in the
 * same folder, so make redoes only what changed.
 */
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { createWriteStream, existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { execa, type ResultPromise } from 'execa'
import { exists, readJson, sha256File, writeJsonAtomic } from '../../util/files.js'
import { cacheDir as defaultCacheDir, projectRoot } from '../../util/paths.js'
import { UserError, errorMessage } from '../../util/errors.js'
import type { Progress } from '../../util/progress.js'
import { readStat } from '../../proc/procfs.js'
import { tryLock } from '../../vm/snapshot/lock.js'
import { inspectBzImage } from '../bzimage.js'
import { kernelVersion } from '../capabilities.js'
import type { KernelImage } from '../image.js'
import { configFacts, describeUnmet, mergeFragment, missingRequired, parseKconfig, unmetSettings, type ConfigFacts, type Unmet } from './kconfig.js'
import { buildKey, sha256Text, versionLine, type BuildInputs } from './key.js'
import { BUILD_FILES, buildDirOf, builtDir } from './layout.js'
import { countLine, formatCount, formatElapsed, type BuildCount } from './progress.js'
import { unpackTarball } from './tarball.js'
import { checkBuildTools, missingToolsLine } from './tools.js'
import { checkKernelSrc, filesIdentity, gitIdentity, kernelTree, type KernelTree, type TreeIdentity } from './tree.js'

/** The project's config fragment: what the guest and the experiments need (README, "Kernels from source"). */
export const FRAGMENT = join(projectRoot, 'src/kernel/build/guest.config')

/** A tree that does not configure or build: for `git bisect run`, a commit to skip. */
export class BuildFailure extends Error {
  override readonly name = 'BuildFailure'
  constructor(
    message: string,
    readonly log?: string,
  ) {
    super(message)
  }
}

export interface BuildOptions {
  cacheDir?: string
  /** make's -j (default: every core). */
  jobs?: number
  log?: (line: string) => void
  progress?: Progress
  signal?: AbortSignal
}

/** What build.json beside a built kernel says. */
export interface BuiltRecord {
  key: string
  inputs: BuildInputs
  tree: string
  commit?: string
  release: string
  versionString: string
  sha256: string
  facts: ConfigFacts
  /** The fragment's settings this tree did not take. */
  unmet: Unmet[]
  /** Objects compiled by the build that made it, and whether it started from an empty folder. */
  objects: number
  full: boolean
  /** The kernel's objects in the build folder after it: about what a full build of this config compiles. */
  objectsInTree?: number
  buildMs: number
  builtAt: string
}

export interface BuiltKernel {
  kernel: KernelImage
  record: BuiltRecord
  identity: TreeIdentity
  reused: boolean
  /** The build folder (make's O=). */
  buildDir: string
}

/** Where `src` leads: a tree, or a tarball unpacked into the cache; and what its files are measured against outside git. */
async function treeOf(cache: string, src: string, log: (line: string) => void, signal?: AbortSignal): Promise<{ tree: KernelTree; base?: string; baseline: string; source?: string }> {
  checkKernelSrc(src)
  if ((await stat(src)).isFile()) {
    const line = missingToolsLine(checkBuildTools({ tarball: true }))
    if (line) throw new UserError(line)
    const t = await unpackTarball(cache, src, { log, ...(signal && { signal }) })
    return { tree: kernelTree(t.root), base: t.base, baseline: t.baseline, source: dirname(t.baseline) }
  }
  const tree = kernelTree(src)
  return { tree, baseline: join(buildDirOf(cache, tree.root), BUILD_FILES.baseline) }
}

/** The key of the tree as it is now, and what it is made of. */
export async function keyOf(cache: string, src: string, o: { log?: (line: string) => void; signal?: AbortSignal } = {}) {
  const log = o.log ?? (() => undefined)
  const { tree, base, baseline, source } = await treeOf(cache, src, log, o.signal)
  const dir = buildDirOf(cache, tree.root)
  await mkdir(dir, { recursive: true })
  if (!existsSync(join(dir, BUILD_FILES.tree))) await writeFile(join(dir, BUILD_FILES.tree), `${tree.root}\n`)
  const [identity, fragment, compiler, linker] = await Promise.all([
    gitIdentity(tree.root).then((g) => g ?? filesIdentity(tree.root, { baseline, ...(base !== undefined && { base }) })),
    readFile(FRAGMENT, 'utf8'),
    versionLine('gcc'),
    versionLine('ld'),
  ])
  const inputs: BuildInputs = { arch: 'x86_64', version: tree.version, tree: { kind: identity.kind, base: identity.base, ...(identity.changes && { changes: identity.changes }) }, fragment: sha256Text(fragment), compiler, linker }
  return { tree, dir, identity, fragment, inputs, key: buildKey(inputs), ...(source !== undefined && { source }) }
}

/** The kernel built under `key`, when it is all there and whole. */
export async function cachedBuild(cache: string, key: string, name: string): Promise<{ kernel: KernelImage; record: BuiltRecord } | undefined> {
  const dir = builtDir(cache, key)
  const record = await readJson<BuiltRecord>(join(dir, 'build.json'))
  const path = join(dir, 'bzImage')
  if (!record || !(await exists(path)) || (await sha256File(path)) !== record.sha256) return undefined
  return { kernel: kernelOfRecord(record, path, name), record }
}

function kernelOfRecord(r: BuiltRecord, path: string, name: string): KernelImage {
  return {
    name,
    release: r.release,
    versionString: r.versionString,
    path,
    source: 'build',
    virtio: r.facts.virtioSerial ? 'builtin' : 'absent',
    initramfs: r.facts.initramfs,
  }
}

/**
 * The kernel of the tree (or tarball) at `src`: from the cache when its key was built before, else
 * built. Throws UserError for what the user must fix (not a tree, tools missing), BuildFailure when
 * the tree does not configure or build.
 */
export async function buildKernel(src: string, o: BuildOptions = {}): Promise<BuiltKernel> {
  const cache = o.cacheDir ?? defaultCacheDir()
  const log = o.log ?? (() => undefined)
  const k = await keyOf(cache, src, { log, ...(o.signal && { signal: o.signal }) })
  const name = src
  const hit = await cachedBuild(cache, k.key, name)
  await stamp([k.dir, ...(k.source ? [k.source] : []), ...(hit ? [builtDir(cache, k.key)] : [])])
  if (hit) return { ...hit, identity: k.identity, reused: true, buildDir: k.dir }
  const tools = missingToolsLine(checkBuildTools())
  if (tools) throw new UserError(tools)
  o.signal?.throwIfAborted()
  const lock = await takeLock(k.dir, log, o.progress, o.signal)
  try {
    o.signal?.throwIfAborted()
    // Another oomlab may have built it while this one waited.
    const again = await cachedBuild(cache, k.key, name)
    if (again) return { ...again, identity: k.identity, reused: true, buildDir: k.dir }
    await endLeftoverMake(k.dir, log)
    const said = k.identity.kind === 'git' ? `git ${k.identity.commit!.slice(0, 12)}${k.identity.changes ? ` + ${k.identity.changed} uncommitted file(s)` : ''}` : k.identity.changes ? `${k.identity.changed} file(s) changed since unpacked/first built` : 'as unpacked/first built'
    log(`building Linux ${k.tree.version} from ${k.tree.root} (${said}) in ${k.dir}, key ${k.key}`)
    const logPath = join(k.dir, BUILD_FILES.log)
    const unmet = await configure(k.tree.root, k.dir, k.fragment, k.tree.version, logPath, log, o.signal)
    const full = !existsSync(join(k.dir, 'vmlinux'))
    const about = full ? await objectsOfFullBuild(cache, k.tree.version) : undefined
    const t0 = performance.now()
    const count = await make(k.tree.root, k.dir, ['-j', String(o.jobs ?? availableParallelism()), 'bzImage'], logPath, {
      ...(o.signal && { signal: o.signal }),
      progress: (c, ms) => o.progress?.('kernel build', `kernel build: ${full ? '' : 'again, only what changed: '}${formatCount(c.objects, about)}, ${formatElapsed(ms)}${c.last ? ` (${c.last})` : ''}`, about ? c.objects / about : undefined),
      append: true,
    })
    const buildMs = performance.now() - t0
    const image = join(k.dir, 'arch/x86/boot/bzImage')
    const inspection = await inspectBzImage(image)
    if (!inspection.ok) throw new BuildFailure(`the build of ${k.tree.root} made no bzImage (${inspection.reason}); its log: ${logPath}`, logPath)
    const configText = await readFile(join(k.dir, '.config'), 'utf8')
    const record: BuiltRecord = {
      key: k.key,
      inputs: k.inputs,
      tree: k.tree.root,
      ...(k.identity.commit && { commit: k.identity.commit }),
      release: inspection.release,
      versionString: inspection.versionString,
      sha256: await sha256File(image),
      facts: configFacts(parseKconfig(configText)),
      unmet,
      objects: count.objects,
      full,
      objectsInTree: await objectsIn(k.dir),
      buildMs: Math.round(buildMs),
      builtAt: new Date().toISOString(),
    }
    const stored = await storeBuilt(cache, record, image, configText)
    await writeFile(join(k.dir, BUILD_FILES.bytes), String(await diskBytes(k.dir)))
    log(`built ${record.release} in ${formatElapsed(buildMs)}: ${formatCount(count.objects)} compiled${full ? '' : ' (only what changed)'}; ${stored}`)
    return { kernel: kernelOfRecord(record, stored, name), record, identity: k.identity, reused: false, buildDir: k.dir }
  } finally {
    await lock()
  }
}

/** The folder's .config: made again only when the tree's defconfig, the fragment or the version changed. */
async function configure(root: string, dir: string, fragment: string, version: string, logPath: string, log: (line: string) => void, signal?: AbortSignal): Promise<Unmet[]> {
  const defconfig = await readFile(join(root, 'arch/x86/configs/x86_64_defconfig'), 'utf8')
  const inputs = sha256Text(`${defconfig}\0${fragment}\0${version}`)
  const config = join(dir, '.config')
  await writeFile(logPath, '')
  if (!existsSync(config) || (await readFile(join(dir, BUILD_FILES.configInputs), 'utf8').catch(() => '')) !== inputs) {
    const t0 = performance.now()
    await make(root, dir, ['x86_64_defconfig'], logPath, { ...(signal && { signal }), append: true })
    await writeFile(config, mergeFragment(await readFile(config, 'utf8'), fragment))
    await make(root, dir, ['olddefconfig'], logPath, { ...(signal && { signal }), append: true })
    await writeFile(join(dir, BUILD_FILES.configInputs), inputs)
    log(`configured from x86_64_defconfig and ${FRAGMENT} in ${formatElapsed(performance.now() - t0)}`)
  }
  const final = parseKconfig(await readFile(config, 'utf8'))
  const missing = missingRequired(final)
  if (missing.length) throw new BuildFailure(`Linux ${version}'s configuration does not build in ${missing.map((s) => `CONFIG_${s}`).join(', ')}, which the guest needs (see ${join(dir, '.config')})`)
  const unmet = unmetSettings(parseKconfig(fragment), final)
  if (unmet.length) log(`config: not as the fragment asks (this tree's Kconfig decides): ${describeUnmet(unmet)}`)
  return unmet
}

interface MakeOptions {
  signal?: AbortSignal
  progress?: (c: BuildCount, elapsedMs: number) => void
  append: boolean
}

/**
 * `make -C ROOT O=DIR ARCH=x86_64 ARGS`, in a process group of its own (an interrupt ends the compilers
 * too), its output into the log and counted. A failure throws BuildFailure with the log's last lines.
 */
async function make(root: string, dir: string, args: string[], logPath: string, o: MakeOptions): Promise<BuildCount> {
  o.signal?.throwIfAborted()
  const out = createWriteStream(logPath, { flags: o.append ? 'a' : 'w' })
  const count: BuildCount = { objects: 0 }
  const t0 = performance.now()
  const child: ResultPromise = execa('make', ['-C', root, `O=${dir}`, 'ARCH=x86_64', ...args], { reject: false, stdin: 'ignore', detached: true, buffer: false, env: { LC_ALL: 'C' } })
  const pidFile = join(dir, BUILD_FILES.make)
  if (child.pid !== undefined) await writeFile(pidFile, JSON.stringify({ pid: child.pid, start: readStat(child.pid)?.startTime }))
  let rest = ''
  const onData = (chunk: Buffer) => {
    out.write(chunk)
    const lines = (rest + chunk.toString('utf8')).split('\n')
    rest = lines.pop() ?? ''
    let counted = false
    for (const line of lines) counted = countLine(count, line) || counted
    if (counted) o.progress?.(count, performance.now() - t0)
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  const tick = o.progress ? setInterval(() => o.progress!(count, performance.now() - t0), 1000) : undefined
  const group = (sig: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, sig)
    } catch {
      /* gone */
    }
  }
  let force: NodeJS.Timeout | undefined
  const onAbort = () => {
    group('SIGTERM')
    force = setTimeout(() => group('SIGKILL'), 5000)
  }
  o.signal?.addEventListener('abort', onAbort, { once: true })
  // Aborted between the check above and the spawn: the listener would never fire.
  if (o.signal?.aborted) onAbort()
  try {
    const r = await child
    if (o.signal?.aborted) throw o.signal.reason
    if (r.exitCode !== 0) {
      await new Promise((done) => out.end(done))
      const tail = (await readFile(logPath, 'utf8')).trimEnd().split('\n').slice(-12)
      const first = count.firstError ? `first error: ${count.firstError}\n` : ''
      throw new BuildFailure(`make ${args.join(' ')} in ${dir} failed (exit ${r.exitCode ?? r.signal}); its log: ${logPath}\n${first}its last lines:\n${tail.map((l) => `  ${l}`).join('\n')}`, logPath)
    }
    return count
  } finally {
    clearInterval(tick)
    clearTimeout(force)
    o.signal?.removeEventListener('abort', onAbort)
    // Nothing of this make runs on after it: its group is ended whatever happened.
    group('SIGKILL')
    await rm(pidFile, { force: true })
    if (!out.closed) await new Promise((done) => out.end(done))
  }
}

/** A make left running by an oomlab that was killed outright: ended before this build uses the folder. */
async function endLeftoverMake(dir: string, log: (line: string) => void): Promise<void> {
  const left = await readJson<{ pid: number; start?: number }>(join(dir, BUILD_FILES.make))
  if (left && left.start !== undefined && readStat(left.pid)?.startTime === left.start) {
    try {
      process.kill(-left.pid, 'SIGKILL')
      log(`ended make (pid ${left.pid}) that an earlier oomlab left running in ${dir}`)
    } catch {
      /* gone meanwhile */
    }
  }
  await rm(join(dir, BUILD_FILES.make), { force: true })
}

/** The build folder's lock: one build of a tree at a time; a second oomlab waits for the first. */
async function takeLock(dir: string, log: (line: string) => void, progress?: Progress, signal?: AbortSignal): Promise<() => Promise<void>> {
  const path = join(dir, BUILD_FILES.lock)
  const t0 = performance.now()
  let said = false
  for (;;) {
    const r = await tryLock(path)
    if ('release' in r) return r.release
    if (!said) log(`another oomlab (pid ${r.owner?.pid ?? '?'}) is building this tree; waiting for it`)
    said = true
    progress?.('kernel build wait', `kernel build: waiting for pid ${r.owner?.pid ?? '?'}'s build of this tree, ${formatElapsed(performance.now() - t0)}`)
    await new Promise((done) => setTimeout(done, 1000))
    if (signal?.aborted) throw signal.reason
  }
}

/** Marks cache folders used now (src/vm/cache.ts evicts and prunes by it). */
async function stamp(dirs: string[]): Promise<void> {
  const now = new Date()
  for (const d of dirs) await utimes(join(d, '.used'), now, now).catch(() => writeFile(join(d, '.used'), '').catch(() => undefined))
}

/** A folder's size on disk, from du (a build folder holds tens of thousands of files). */
export async function diskBytes(dir: string): Promise<number> {
  const r = await execa('du', ['-sk', dir], { reject: false, stdin: 'ignore' })
  return (Number(String(r.stdout).split('\t')[0]) || 0) * 1024
}

/** The kernel's objects in a build folder (not the host's tools, objtool's, or kallsyms' passes). */
async function objectsIn(dir: string): Promise<number> {
  const r = await execa('find', ['.', '(', '-path', './tools', '-o', '-path', './scripts', ')', '-prune', '-o', '-name', '*.o', '!', '-name', '.tmp_*', '-print'], { cwd: dir, reject: false, stdin: 'ignore' })
  return String(r.stdout).split('\n').filter(Boolean).length
}

/** About how many objects a full build of this major.minor compiles, from the builds before it here, for "of about N". */
async function objectsOfFullBuild(cache: string, version: string): Promise<number | undefined> {
  const v = kernelVersion(version)
  let about: number | undefined
  for (const key of await readdir(builtDir(cache)).catch(() => [] as string[])) {
    const r = await readJson<BuiltRecord>(join(builtDir(cache, key), 'build.json'))
    const rv = r && kernelVersion(r.inputs.version)
    if (!r || !v || !rv || rv[0] !== v[0] || rv[1] !== v[1]) continue
    about = r.objectsInTree ?? (r.full ? r.objects : about)
  }
  return about
}

/** The bzImage, its .config and record under the key, moved into place whole. */
async function storeBuilt(cache: string, record: BuiltRecord, image: string, config: string): Promise<string> {
  const dir = builtDir(cache, record.key)
  const partial = `${dir}.${randomBytes(4).toString('hex')}.partial`
  try {
    await mkdir(partial, { recursive: true })
    await copyFile(image, join(partial, 'bzImage'))
    await writeFile(join(partial, 'config'), config)
    await writeJsonAtomic(join(partial, 'build.json'), record)
    await rm(dir, { recursive: true, force: true })
    await rename(partial, dir)
  } catch (err) {
    throw new Error(`could not store the built kernel in ${dir}: ${errorMessage(err)}`)
  } finally {
    await rm(partial, { recursive: true, force: true })
  }
  return join(dir, 'bzImage')
}
