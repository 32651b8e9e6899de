/**
 * Kernels to boot: Debian's cloud kernels fetched with apt under a private configuration (the
 * system's sources, lists and package state are never read or written), or a bzImage the user
 * gives. Fetched kernels are cached by release, and each suite name remembers the release it
 * resolved to, so a warm run needs no network.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { access, copyFile, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { withDir } from 'tmp-promise'
import { UserError, errorMessage } from '../util/errors.js'
import { cacheDir as defaultCacheDir } from '../util/paths.js'
import { megabytes, type Progress } from '../util/progress.js'
import { findVirtio, writeModulesCpio, type VirtioSupport } from './virtio.js'

export interface KernelImage {
  /** What the user asked for: 'bookworm', '6.1.0-50', or the image path. */
  name: string
  /** Kernel release read from the bzImage header, e.g. '6.1.0-50-cloud-amd64'. */
  release: string
  /** Full version string from the bzImage header. */
  versionString: string
  /** Absolute path of the vmlinuz. */
  path: string
  source: 'debian' | 'file'
  /** Debian suite it came from. */
  suite?: string
  /** e.g. 'linux-image-6.1.0-50-cloud-amd64' (in sid the vmlinuz itself ships in linux-binary-*). */
  debianPackage?: string
  /** Package version, e.g. '6.1.158-1'. */
  debianVersion?: string
  /** How a guest of this kernel gets virtio-serial, the agent's fast channel (unknown for a bzImage given by path: the UART then). */
  virtio?: VirtioSupport['kind']
  /** For kind 'modules': a cpio of the modules to load, to go after the guest's image. */
  virtioModules?: string
}

export const DEBIAN_SUITES: readonly { name: string; suite: string; note: string }[] = [
  { name: 'bullseye', suite: 'bullseye', note: 'Debian 11, Linux 5.10' },
  { name: 'bookworm', suite: 'bookworm', note: 'Debian 12, Linux 6.1 (default)' },
  { name: 'bookworm-backports', suite: 'bookworm-backports', note: 'Debian 12 backports, Linux 6.12' },
  { name: 'trixie', suite: 'trixie', note: 'Debian 13, Linux 6.12' },
  { name: 'sid', suite: 'sid', note: 'Debian unstable, newest Linux' },
]

export const DEFAULT_KERNEL = 'bookworm'

export interface ResolveKernelOptions {
  /** Defaults to the user's cache folder (cacheDir()). */
  cacheDir?: string
  /** Ask the mirror again even when a suite name has a remembered kernel. */
  refresh?: boolean
  log?: (line: string) => void
  /** The download's bytes, as they arrive. */
  progress?: Progress
  signal?: AbortSignal
}

/** Debian's mirror; OOMLAB_DEBIAN_MIRROR names another (a local mirror, a proxy). */
const mirror = () => process.env.OOMLAB_DEBIAN_MIRROR || 'http://deb.debian.org/debian'
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg'
const FLAVOUR = 'cloud-amd64'
const META_PACKAGE = `linux-image-${FLAVOUR}`
/** The ABI part of linux-image-<abi>-cloud-amd64: 6.1.0-50, 6.12.48+deb13, 6.12.90+deb12.1 */
const ABI_PATTERN = /^\d+\.\d+\.\d+(?:[-+.~][0-9a-z]+)*$/

// ---------------------------------------------------------------------------------------------
// bzImage header (Documentation/arch/x86/boot.rst)

const BOOT_FLAG_OFFSET = 0x1fe // 0xAA55
const HEADER_MAGIC_OFFSET = 0x202 // "HdrS"
const KERNEL_VERSION_OFFSET = 0x20e // 16-bit pointer to the version string, minus 0x200
const SETUP_SECTS_OFFSET = 0x1f1
const SYSSIZE_OFFSET = 0x1f4 // protected-mode code size in 16-byte paragraphs
/** The version string pointer is 16 bits, so the string always lies in the first 64 KiB + 0x200. */
const HEADER_READ_BYTES = 0x10000 + 0x200 + 0x200

/**
 * The version string of an x86 bzImage ('6.1.0-50-cloud-amd64 (debian-kernel@...) #1 SMP ...'),
 * or undefined when `buf` does not start with one. Needs only the first 64 KiB of the file.
 */
export function readBzImageVersion(buf: Buffer): string | undefined {
  if (buf.length < KERNEL_VERSION_OFFSET + 2) return undefined
  if (buf.readUInt16LE(BOOT_FLAG_OFFSET) !== 0xaa55) return undefined
  if (buf.toString('latin1', HEADER_MAGIC_OFFSET, HEADER_MAGIC_OFFSET + 4) !== 'HdrS') return undefined
  const pointer = buf.readUInt16LE(KERNEL_VERSION_OFFSET)
  if (pointer === 0) return undefined
  const start = pointer + 0x200
  const end = buf.indexOf(0, start)
  if (start >= buf.length || end <= start) return undefined
  const version = buf.toString('latin1', start, end)
  // A kernel release starts with its version number; anything else is not a version string.
  if (!/^\d+\.\d+\S*( |$)/.test(version) || /[^\x20-\x7e]/.test(version)) return undefined
  return version
}

/** Bytes the header says the image has (a signed kernel has its signature appended after them). */
function bzImageMinimumSize(buf: Buffer): number {
  const setupSects = buf.readUInt8(SETUP_SECTS_OFFSET) || 4 // 0 means 4, for old boot loaders
  return (setupSects + 1) * 512 + buf.readUInt32LE(SYSSIZE_OFFSET) * 16
}

function releaseOf(versionString: string): string {
  return versionString.split(' ')[0]!
}

type Inspection = { ok: true; versionString: string; release: string } | { ok: false; reason: string }

/** Whether `path` is a complete x86 bzImage, and its version if so. */
async function inspectBzImage(path: string): Promise<Inspection> {
  let head: Buffer
  let size: number
  try {
    const file = await open(path, 'r')
    try {
      size = (await file.stat()).size
      head = Buffer.alloc(Math.min(size, HEADER_READ_BYTES))
      await file.read(head, 0, head.length, 0)
    } finally {
      await file.close()
    }
  } catch (err) {
    return { ok: false, reason: `cannot be read (${errorMessage(err)})` }
  }
  const versionString = readBzImageVersion(head)
  if (versionString === undefined) return { ok: false, reason: 'is not an x86 Linux kernel image (bzImage)' }
  const expected = bzImageMinimumSize(head)
  if (size < expected) return { ok: false, reason: `is truncated (${size} bytes, its header says ${expected})` }
  return { ok: true, versionString, release: releaseOf(versionString) }
}

/** The kernel for --kernel-image PATH. */
export async function kernelFromImage(path: string, name?: string): Promise<KernelImage> {
  const absolute = resolve(path)
  const info = await stat(absolute).catch(() => undefined)
  if (!info) throw new UserError(`${path} does not exist: give the path of a kernel image (vmlinuz/bzImage)`)
  if (!info.isFile()) throw new UserError(`${path} is not a file: give the path of a kernel image (vmlinuz/bzImage)`)
  const inspection = await inspectBzImage(absolute)
  if (!inspection.ok) throw new UserError(`${path} ${inspection.reason}`)
  return {
    name: name ?? path,
    release: inspection.release,
    versionString: inspection.versionString,
    path: absolute,
    source: 'file',
  }
}

// ---------------------------------------------------------------------------------------------
// Resolving a kernel name

interface Context {
  spec: string
  kernelsDir: string
  refresh: boolean
  log: (line: string) => void
  progress: Progress
  signal?: AbortSignal
  /** Releases whose failed cache check was already logged. */
  reportedBroken: Set<string>
}

/**
 * The kernel for a suite name (DEBIAN_SUITES) or a Debian kernel ABI version ('6.1.0-50',
 * '6.12.48+deb13'), fetched into the cache when it is not there yet.
 */
function contextOf(spec: string, opts: ResolveKernelOptions): Context {
  return {
    spec,
    kernelsDir: join(opts.cacheDir ?? defaultCacheDir(), 'kernels'),
    refresh: opts.refresh ?? false,
    log: (line) => opts.log?.(`kernel ${spec}: ${line}`),
    progress: (key, text, fraction) => opts.progress?.(key, `kernel ${spec}: ${text}`, fraction),
    signal: opts.signal,
    reportedBroken: new Set(),
  }
}

export async function resolveKernel(spec: string, opts: ResolveKernelOptions = {}): Promise<KernelImage> {
  const ctx = contextOf(spec, opts)
  const target = parseKernelSpec(spec)
  const cachedKernel = () =>
    target.kind === 'suite'
      ? rememberedSuiteKernel(ctx, target.suite)
      : cachedKernelOrReport(ctx, `${target.abi}-${FLAVOUR}`)
  if (!ctx.refresh) {
    const cached = await cachedKernel()
    if (cached) return cached
  }
  return oneFetchAtATime(ctx.kernelsDir, async () => {
    if (!ctx.refresh) {
      // Another call in this process may have fetched it while this one waited.
      const cached = await cachedKernel()
      if (cached) return cached
    }
    return target.kind === 'suite' ? resolveSuite(ctx, target.suite) : resolveAbi(ctx, target.abi)
  })
}

export type Target = { kind: 'suite'; suite: string } | { kind: 'abi'; abi: string }

/** A suite name, or the ABI part of linux-image-<abi>-cloud-amd64 ('6.1.0-50', with or without '-cloud-amd64'). */
export function parseKernelSpec(spec: string): Target {
  const suite = DEBIAN_SUITES.find((s) => s.name === spec)?.suite
  if (suite) return { kind: 'suite', suite }
  const abi = spec.endsWith(`-${FLAVOUR}`) ? spec.slice(0, -FLAVOUR.length - 1) : spec
  if (ABI_PATTERN.test(abi)) return { kind: 'abi', abi }
  throw new UserError(
    `unknown kernel "${spec}": give a Debian suite (${DEBIAN_SUITES.map((s) => s.name).join(', ')}), ` +
      `a Debian kernel version such as 6.1.0-50 or 6.12.48+deb13, or --kernel-image PATH`,
  )
}

const fetchQueues = new Map<string, Promise<unknown>>()

/** Runs fetches into one cache folder one after another: concurrent callers then share the result. */
function oneFetchAtATime<T>(kernelsDir: string, fetch: () => Promise<T>): Promise<T> {
  const previous = fetchQueues.get(kernelsDir) ?? Promise.resolve()
  const next = previous.catch(() => {}).then(fetch)
  fetchQueues.set(kernelsDir, next)
  return next
}

function imagePackageOf(abi: string): string {
  return `linux-image-${abi}-${FLAVOUR}`
}

/** The kernel a suite name resolved to last time, if it is still intact in the cache. */
async function rememberedSuiteKernel(ctx: Context, suite: string): Promise<KernelImage | undefined> {
  const remembered = await readJson<RememberedSuite>(suiteFile(ctx, suite))
  return remembered && cachedKernelOrReport(ctx, remembered.release)
}

async function cachedKernelOrReport(ctx: Context, release: string): Promise<KernelImage | undefined> {
  const cached = await checkCachedKernel(ctx, release)
  if (cached.ok) return { ...cached.kernel, name: ctx.spec }
  reportBrokenCache(ctx, release, cached.reason)
  return undefined
}

/**
 * The kernel release a name stands for now, asking Debian's mirror for a suite (its package lists only, no
 * download): a key for caching the kernel between CI jobs.
 */
export async function kernelReleaseOf(spec: string, opts: ResolveKernelOptions = {}): Promise<string> {
  const target = parseKernelSpec(spec)
  if (target.kind === 'abi') return `${target.abi}-${FLAVOUR}`
  const { pkg } = await newestInSuite(contextOf(spec, { ...opts, refresh: true }), target.suite)
  return pkg.name.slice('linux-image-'.length)
}

async function newestInSuite(ctx: Context, suite: string): Promise<{ apt: AptSuite; pkg: PackageInfo }> {
  const apt = await updateSuite(ctx, suite)
  const meta = await showPackage(ctx, apt, META_PACKAGE)
  if (!meta) throw new UserError(`Debian ${suite} has no package ${META_PACKAGE}: try another suite or --kernel-image PATH`)
  const imagePackage = meta.depends.find((dep) => /^linux-image-.+-cloud-amd64$/.test(dep))
  if (!imagePackage) {
    throw new UserError(`${META_PACKAGE} in Debian ${suite} depends on no linux-image package: try another suite or --kernel-image PATH`)
  }
  const pkg = await showPackage(ctx, apt, imagePackage)
  if (!pkg) throw new UserError(`Debian ${suite} lists ${imagePackage} but has no such package: try again with refresh, or --kernel-image PATH`)
  return { apt, pkg }
}

async function resolveSuite(ctx: Context, suite: string): Promise<KernelImage> {
  ctx.log(`resolving the newest ${META_PACKAGE} in Debian ${suite}`)
  const { apt, pkg } = await newestInSuite(ctx, suite)
  const kernel = await obtainKernel(ctx, apt, pkg)
  await writeJsonAtomic(suiteFile(ctx, suite), {
    suite,
    release: kernel.release,
    debianPackage: pkg.name,
    debianVersion: pkg.version,
    resolvedAt: new Date().toISOString(),
  } satisfies RememberedSuite)
  return kernel
}

async function resolveAbi(ctx: Context, abi: string): Promise<KernelImage> {
  const packageName = imagePackageOf(abi)
  const searched: string[] = []
  const available = new Set<string>()
  for (const { suite } of DEBIAN_SUITES) {
    ctx.log(`looking for ${packageName} in Debian ${suite}`)
    const apt = await updateSuite(ctx, suite)
    searched.push(suite)
    const names = await imagePackageNames(ctx, apt)
    const pkg = names.includes(packageName) ? await showPackage(ctx, apt, packageName) : undefined
    if (pkg) return obtainKernel(ctx, apt, pkg)
    for (const name of names) available.add(name)
  }
  const versions = [...available].map((name) => name.slice('linux-image-'.length, -FLAVOUR.length - 1))
  throw new UserError(
    `no Debian suite has ${packageName} (searched ${searched.join(', ')}; Debian keeps only recent kernel builds): ` +
      `give one of ${versions.join(', ')}, a suite name, or --kernel-image PATH`,
  )
}

/** The cached kernel for `pkg`, or a fresh download when it is missing, stale or damaged. */
async function obtainKernel(ctx: Context, apt: AptSuite, pkg: PackageInfo): Promise<KernelImage> {
  const expectedRelease = pkg.name.slice('linux-image-'.length)
  const cached = await checkCachedKernel(ctx, expectedRelease)
  if (cached.ok && cached.kernel.debianVersion === pkg.version) return { ...cached.kernel, name: ctx.spec, suite: apt.suite }
  if (cached.ok) ctx.log(`replacing cached ${expectedRelease} ${cached.kernel.debianVersion} with ${pkg.version}`)
  else reportBrokenCache(ctx, expectedRelease, cached.reason)
  return fetchKernel(ctx, apt, pkg)
}

function reportBrokenCache(ctx: Context, release: string, reason: string | undefined): void {
  if (!reason || ctx.reportedBroken.has(release)) return
  ctx.reportedBroken.add(release)
  ctx.log(`cached kernel ${release} ${reason}; fetching it again`)
}

// ---------------------------------------------------------------------------------------------
// Cache: <kernelsDir>/<release>/{vmlinuz,kernel.json} and <kernelsDir>/suites/<suite>.json

interface CachedKernelRecord extends Omit<KernelImage, 'virtio'> {
  sha256: string
  fetchedAt: string
  /** Absent in records of oomlab before the virtio channel: such a kernel is fetched again. */
  virtio?: VirtioSupport
  virtioModulesBytes?: number
}

interface RememberedSuite {
  suite: string
  release: string
  debianPackage: string
  debianVersion: string
  resolvedAt: string
}

type CacheCheck = { ok: true; kernel: KernelImage } | { ok: false; reason?: string }

function suiteFile(ctx: Context, suite: string): string {
  return join(ctx.kernelsDir, 'suites', `${suite}.json`)
}

function releaseDir(ctx: Context, release: string): string {
  return join(ctx.kernelsDir, release)
}

/** A cached kernel counts only if it is all there: record, file, matching sha256, valid header. */
async function checkCachedKernel(ctx: Context, release: string): Promise<CacheCheck> {
  const dir = releaseDir(ctx, release)
  const record = await readJson<CachedKernelRecord>(join(dir, 'kernel.json'))
  if (!record) return { ok: false } // never fetched: nothing to report
  const path = join(dir, 'vmlinuz')
  if (!(await exists(path))) return { ok: false, reason: 'has no vmlinuz' }
  if ((await sha256File(path)) !== record.sha256) return { ok: false, reason: 'does not match its recorded sha256' }
  const inspection = await inspectBzImage(path)
  if (!inspection.ok) return { ok: false, reason: inspection.reason }
  if (inspection.release !== record.release) return { ok: false, reason: `holds release ${inspection.release}` }
  if (!record.virtio) return { ok: false, reason: 'has no record of its virtio modules (cached by an older oomlab)' }
  const modules = join(dir, VIRTIO_CPIO)
  if (record.virtio.kind === 'modules' && (await stat(modules).catch(() => undefined))?.size !== record.virtioModulesBytes)
    return { ok: false, reason: `has no intact ${VIRTIO_CPIO}` }
  const { sha256: _sha, fetchedAt: _at, virtio, virtioModulesBytes: _b, ...kernel } = record
  return { ok: true, kernel: { ...kernel, path, virtio: virtio.kind, ...(virtio.kind === 'modules' && { virtioModules: modules }) } }
}

/** The modules a guest loads for virtio-serial, beside the vmlinuz. */
const VIRTIO_CPIO = 'virtio.cpio'

/** Puts the vmlinuz (and virtio modules) and then its record in place; a crash before the record fails the checks. */
async function storeKernel(ctx: Context, vmlinuz: string, kernel: Omit<KernelImage, 'path' | 'virtio'>, virtio: VirtioSupport, modulesCpio?: string): Promise<KernelImage> {
  const dir = releaseDir(ctx, kernel.release)
  await mkdir(dir, { recursive: true })
  const path = join(dir, 'vmlinuz')
  const modules = join(dir, VIRTIO_CPIO)
  await replaceAtomically(path, (temp) => copyFile(vmlinuz, temp))
  if (modulesCpio) await replaceAtomically(modules, (temp) => copyFile(modulesCpio, temp))
  const stored: KernelImage = { ...kernel, path, virtio: virtio.kind, ...(modulesCpio && { virtioModules: modules }) }
  await writeJsonAtomic(join(dir, 'kernel.json'), {
    ...stored,
    virtio,
    ...(modulesCpio && { virtioModulesBytes: (await stat(modules)).size }),
    sha256: await sha256File(path),
    fetchedAt: new Date().toISOString(),
  } satisfies CachedKernelRecord)
  return stored
}

// ---------------------------------------------------------------------------------------------
// apt under a private configuration, one folder per suite

interface AptSuite {
  suite: string
  options: string[]
}

interface PackageInfo {
  name: string
  version: string
  /** Package names from Depends (alternatives and version constraints dropped). */
  depends: string[]
}

/** How long to wait for another process's apt run on the same suite folder. */
const APT_LOCK_WAIT_MS = 120_000

async function updateSuite(ctx: Context, suite: string): Promise<AptSuite> {
  await requireKeyring()
  const dir = join(ctx.kernelsDir, 'apt', suite)
  await mkdir(join(dir, 'lists', 'partial'), { recursive: true })
  await mkdir(join(dir, 'cache', 'archives', 'partial'), { recursive: true })
  const sourceList = join(dir, 'sources.list')
  await writeFileAtomic(sourceList, `deb [signed-by=${KEYRING}] ${mirror()} ${suite} main\n`)
  const apt: AptSuite = { suite, options: privateAptOptions(dir, sourceList) }
  ctx.log(`updating the package lists of Debian ${suite}`)
  const deadline = Date.now() + APT_LOCK_WAIT_MS
  for (;;) {
    // Without Error-Mode=any, apt-get update exits 0 after a failed fetch and keeps old lists.
    const result = await runApt(ctx, 'apt-get', apt, ['-o', 'APT::Update::Error-Mode=any', 'update'])
    if (!result.failed) return apt
    // apt locks the lists folder: another oomlab process may be updating this suite right now.
    if (/Could not get lock/.test(result.stderr) && Date.now() < deadline) {
      await sleep(1000, undefined, { signal: ctx.signal })
      continue
    }
    throw new UserError(`could not update the package lists of Debian ${suite} from ${mirror()}: ${aptFailure(result)}`)
  }
}

function privateAptOptions(dir: string, sourceList: string): string[] {
  const settings = {
    'Dir::Etc::SourceList': sourceList,
    'Dir::Etc::SourceParts': '/dev/null',
    'Dir::State::Lists': join(dir, 'lists'),
    'Dir::Cache': join(dir, 'cache'),
    'Dir::State::status': '/dev/null',
    'APT::Architecture': 'amd64',
    'APT::Architectures': 'amd64', // not the host's foreign architectures from dpkg
    'Acquire::Languages': 'none', // no Translation files: only package fields are read
    // No binary caches of the lists (36 MB each per suite); apt-cache rebuilds them in ~1 s a call.
    'Dir::Cache::pkgcache': '',
    'Dir::Cache::srcpkgcache': '',
  }
  return Object.entries(settings).flatMap(([key, value]) => ['-o', `${key}=${value}`])
}

async function requireKeyring(): Promise<void> {
  if (!(await exists(KEYRING))) {
    throw new UserError(
      `the Debian archive keyring ${KEYRING} is missing: apt-get install debian-archive-keyring, or use --kernel-image PATH`,
    )
  }
}

interface AptResult {
  failed: boolean
  stdout: string
  stderr: string
}

async function runApt(
  ctx: Context,
  tool: 'apt-get' | 'apt-cache',
  apt: AptSuite,
  args: string[],
  cwd?: string,
  onLine?: (line: string) => void,
): Promise<AptResult> {
  ctx.signal?.throwIfAborted()
  const child = execa(tool, [...apt.options, ...args], {
    cwd,
    env: { LC_ALL: 'C' }, // apt's field names and messages are parsed below
    cancelSignal: ctx.signal,
    reject: false,
    stdin: 'ignore',
  })
  if (onLine) {
    let rest = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n')
      rest = lines.pop() ?? ''
      for (const l of lines) onLine(l)
    })
  }
  const result = await child
  if (result.isCanceled) throw ctx.signal?.reason ?? new Error('canceled')
  if (result.failed && result.code === 'ENOENT') {
    throw new UserError(`${tool} is not installed: apt-get install apt (on Debian or Ubuntu), or use --kernel-image PATH`)
  }
  return { failed: result.failed, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') }
}

/** The line of apt's output that says what went wrong. */
function aptFailure(result: AptResult): string {
  const lines = `${result.stderr}\n${result.stdout}`.split('\n').map((line) => line.trim()).filter((line) => !line.startsWith('dlstatus:'))
  const generic = /Some index files failed to download|Download is performed unsandboxed/
  const gpg = lines.find((line) => /^W: GPG error|NO_PUBKEY|EXPKEYSIG/.test(line))
  if (gpg) return `${gpg} (a newer debian-archive-keyring may be needed)`
  const errors = lines.filter((line) => /^E: /.test(line) && !generic.test(line))
  const warnings = lines.filter((line) => /^W: /.test(line) && !generic.test(line))
  return errors[0] ?? warnings[0] ?? lines.filter(Boolean).at(-1) ?? 'apt failed without a message'
}

/** Candidate version of `name` in the suite, or undefined when the suite has no such package. */
async function showPackage(ctx: Context, apt: AptSuite, name: string): Promise<PackageInfo | undefined> {
  const result = await runApt(ctx, 'apt-cache', apt, ['show', '--no-all-versions', name])
  if (result.failed) {
    if (/No packages found|Unable to locate package/.test(result.stderr)) return undefined
    throw new UserError(`could not read package ${name} from the Debian ${apt.suite} lists: ${aptFailure(result)}`)
  }
  const fields = parseControlFields(result.stdout)
  if (fields.Package !== name || !fields.Version) return undefined
  return { name, version: fields.Version, depends: parseDependsNames(fields.Depends ?? '') }
}

/** Fields of the first stanza of apt-cache show (continuation lines folded in). */
function parseControlFields(text: string): Record<string, string> {
  const fields: Record<string, string> = {}
  let last: string | undefined
  for (const line of text.split('\n')) {
    if (line === '') break
    const match = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line)
    if (match) fields[(last = match[1]!)] = match[2]!
    else if (last && /^\s/.test(line)) fields[last] += `\n${line.trim()}`
  }
  return fields
}

/** 'a (= 1), b | c (>= 2)' → ['a', 'b', 'c'] */
function parseDependsNames(depends: string): string[] {
  return depends
    .split(/[,|]/)
    .map((dep) => dep.trim().split(/[\s(:]/)[0]!)
    .filter(Boolean)
}

/** Names of the suite's linux-image-<abi>-cloud-amd64 packages, oldest first. */
async function imagePackageNames(ctx: Context, apt: AptSuite): Promise<string[]> {
  const result = await runApt(ctx, 'apt-cache', apt, ['pkgnames', 'linux-image-'])
  if (result.failed) throw new UserError(`could not list the kernels of Debian ${apt.suite}: ${aptFailure(result)}`)
  return result.stdout
    .split('\n')
    .filter((name) => /^linux-image-\d.*-cloud-amd64$/.test(name))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
}

// ---------------------------------------------------------------------------------------------
// Downloading and unpacking

/** Downloads the package (and, for a stub image package, the linux-binary one) and keeps the vmlinuz. */
async function fetchKernel(ctx: Context, apt: AptSuite, pkg: PackageInfo): Promise<KernelImage> {
  return withDir(
    async ({ path: workDir }) => {
      let vmlinuz = await downloadAndFindVmlinuz(ctx, apt, pkg, workDir)
      if (!vmlinuz) {
        // sid splits the kernel: linux-image-<ver> is a stub depending on linux-binary-<ver>.
        const binaryName = pkg.depends.find((dep) => dep.startsWith('linux-binary-'))
        const binary = binaryName ? await showPackage(ctx, apt, binaryName) : undefined
        if (binary) {
          ctx.log(`${pkg.name} holds no vmlinuz; it comes in ${binary.name}`)
          vmlinuz = await downloadAndFindVmlinuz(ctx, apt, binary, workDir)
        }
      }
      if (!vmlinuz) {
        throw new UserError(`${pkg.name} ${pkg.version} from Debian ${apt.suite} holds no vmlinuz: try another kernel or --kernel-image PATH`)
      }
      const inspection = await inspectBzImage(vmlinuz)
      if (!inspection.ok) {
        throw new UserError(`the vmlinuz in ${pkg.name} ${pkg.version} ${inspection.reason}: try another kernel or --kernel-image PATH`)
      }
      const roots = async () => (await readdir(workDir)).filter((f) => f.endsWith('.root')).map((f) => join(workDir, f))
      let virtio = await findVirtio(await roots())
      // sid splits the rest too: modules.builtin comes in linux-base-<ver> (400 kB), the modules in linux-modules-<ver>.
      for (const prefix of ['linux-base-', 'linux-modules-']) {
        if (virtio && virtio.support.kind !== 'absent') break
        const name = pkg.depends.find((dep) => dep.startsWith(prefix))
        const more = name ? await showPackage(ctx, apt, name) : undefined
        if (!more) continue
        ctx.log(`${pkg.name}'s ${prefix === 'linux-base-' ? 'list of built-in drivers comes' : 'modules come'} in ${more.name}`)
        await downloadAndExtract(ctx, apt, more, workDir)
        virtio = await findVirtio(await roots())
      }
      let support: VirtioSupport = virtio?.support ?? { kind: 'absent', why: 'its packages hold no modules.builtin' }
      let modulesCpio: string | undefined
      if (virtio && support.kind === 'modules') {
        // The modules are a speed-up, not a need: without them (no xz to unpack them) the agent uses the UART.
        modulesCpio = join(workDir, VIRTIO_CPIO)
        await writeModulesCpio(virtio, modulesCpio).catch((err: unknown) => {
          support = { kind: 'absent', why: errorMessage(err) }
          modulesCpio = undefined
        })
      }
      const kernel = await storeKernel(
        ctx,
        vmlinuz,
        {
          name: ctx.spec,
          release: inspection.release,
          versionString: inspection.versionString,
          source: 'debian',
          suite: apt.suite,
          debianPackage: pkg.name,
          debianVersion: pkg.version,
        },
        support,
        modulesCpio,
      )
      ctx.log(`${kernel.release} ready at ${kernel.path} (virtio-serial: ${support.kind === 'modules' ? `modules ${support.modules.join(', ')}` : support.kind === 'absent' ? `none, ${support.why}: the agent uses the UART` : 'built in'})`)
      return kernel
    },
    { unsafeCleanup: true, prefix: 'oomlab-kernel-' },
  )
}

/**
 * Reads `apt-get -o APT::Status-Fd=1 download`'s output line by line: its "Get:" line gives the size, its
 * "dlstatus:" lines the fraction done. Returns the download's state after each status line.
 */
export function aptDownload(): (line: string) => { fraction: number; bytes?: number } | undefined {
  let bytes: number | undefined
  return (line) => {
    const size = /^Get:\d+ .*\[([\d.]+) (kB|MB)\]$/.exec(line.trim())
    if (size) bytes = Number(size[1]) * (size[2] === 'MB' ? 1e6 : 1e3)
    const status = /^dlstatus:\d+:([\d.]+):/.exec(line)
    if (!status) return undefined
    return { fraction: Math.min(1, Number(status[1]) / 100), ...(bytes !== undefined && { bytes }) }
  }
}

/** The vmlinuz unpacked from `pkg` into its own folder under workDir, if the package has one. */
async function downloadAndFindVmlinuz(ctx: Context, apt: AptSuite, pkg: PackageInfo, workDir: string): Promise<string | undefined> {
  return findVmlinuz(await downloadAndExtract(ctx, apt, pkg, workDir))
}

/** Downloads `pkg` and unpacks it into workDir/<name>.root; returns that folder. */
async function downloadAndExtract(ctx: Context, apt: AptSuite, pkg: PackageInfo, workDir: string): Promise<string> {
  const downloadDir = join(workDir, `${pkg.name}.download`)
  const rootDir = join(workDir, `${pkg.name}.root`)
  await mkdir(downloadDir)
  ctx.log(`downloading ${pkg.name} ${pkg.version}`)
  const download = aptDownload()
  const onLine = (line: string) => {
    const d = download(line)
    if (d) ctx.progress(`download ${pkg.name}`, `downloading ${pkg.name}: ${d.bytes ? `${megabytes(d.fraction * d.bytes)} of ${megabytes(d.bytes)}` : `${(d.fraction * 100).toFixed(0)}%`}`, d.fraction)
  }
  const result = await runApt(ctx, 'apt-get', apt, ['-o', 'APT::Status-Fd=1', 'download', `${pkg.name}=${pkg.version}`], downloadDir, onLine)
  const debs = (await readdir(downloadDir)).filter((file) => file.endsWith('.deb'))
  if (result.failed || debs.length !== 1) {
    throw new UserError(`downloading ${pkg.name} ${pkg.version} from Debian ${apt.suite} failed: ${aptFailure(result)}`)
  }
  await extractDeb(ctx, join(downloadDir, debs[0]!), rootDir)
  return rootDir
}

async function extractDeb(ctx: Context, deb: string, into: string): Promise<void> {
  ctx.signal?.throwIfAborted()
  const result = await execa('dpkg', ['-x', deb, into], { reject: false, cancelSignal: ctx.signal, stdin: 'ignore' })
  if (result.isCanceled) throw ctx.signal?.reason ?? new Error('canceled')
  if (result.failed && result.code === 'ENOENT') {
    throw new UserError('dpkg is not installed: apt-get install dpkg, or use --kernel-image PATH')
  }
  if (result.failed) {
    const last = String(result.stderr ?? '').trim().split('\n').at(-1) || `exit code ${result.exitCode}`
    throw new UserError(`unpacking ${deb} failed: ${last}`)
  }
}

/** /boot/vmlinuz-<ver> (bullseye..trixie) or /usr/lib/modules/<ver>/vmlinuz (sid's linux-binary). */
async function findVmlinuz(root: string): Promise<string | undefined> {
  const bootFiles = await readdir(join(root, 'boot')).catch(() => [] as string[])
  const boot = bootFiles.find((file) => file.startsWith('vmlinuz-'))
  if (boot) return join(root, 'boot', boot)
  for (const modulesDir of ['usr/lib/modules', 'lib/modules']) {
    for (const version of await readdir(join(root, modulesDir)).catch(() => [] as string[])) {
      const candidate = join(root, modulesDir, version, 'vmlinuz')
      if (await exists(candidate)) return candidate
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Small file helpers

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return undefined // missing or unreadable: treated as not cached
  }
}

function tempNameFor(path: string): string {
  return join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`)
}

/** Writes `path` through a temp file beside it, renamed over it: a reader sees the old file or the new, whole. */
async function replaceAtomically(path: string, write: (temp: string) => Promise<void>): Promise<void> {
  const temp = tempNameFor(path)
  try {
    await write(temp)
    await rename(temp, path)
  } finally {
    await rm(temp, { force: true })
  }
}

async function writeFileAtomic(path: string, data: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await replaceAtomically(path, (temp) => writeFile(temp, data))
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`)
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
