/**
 * Debian's packages fetched with apt under a private configuration, one folder per suite: the system's
 * sources, lists and package state are never read or written. Also the unpacking of a .deb (dpkg -x)
 * and where a kernel package keeps its vmlinuz.
 */
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { UserError } from '../util/errors.js'
import { exists, writeFileAtomic } from '../util/files.js'
import { megabytes, type Progress } from '../util/progress.js'

/** Debian's mirror; OOMLAB_DEBIAN_MIRROR names another (a local mirror, a proxy). */
export const mirror = () => process.env.OOMLAB_DEBIAN_MIRROR || 'http://deb.debian.org/debian'
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg'
/** The flavour whose kernels boot under QEMU with all the guest needs built in. */
export const FLAVOUR = 'cloud-amd64'

/** What an apt run reports to, and is stopped by. */
export interface AptContext {
  /** The cache's kernels folder: apt's lists and downloads go in its apt/<suite>/. */
  kernelsDir: string
  log: (line: string) => void
  progress: Progress
  signal?: AbortSignal
}

export interface AptSuite {
  suite: string
  options: string[]
}

export interface PackageInfo {
  name: string
  version: string
  /** Package names from Depends (alternatives and version constraints dropped). */
  depends: string[]
}

/** How long to wait for another process's apt run on the same suite folder. */
const APT_LOCK_WAIT_MS = 120_000

export async function updateSuite(ctx: AptContext, suite: string): Promise<AptSuite> {
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
  ctx: AptContext,
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
export async function showPackage(ctx: AptContext, apt: AptSuite, name: string): Promise<PackageInfo | undefined> {
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
export async function imagePackageNames(ctx: AptContext, apt: AptSuite): Promise<string[]> {
  const result = await runApt(ctx, 'apt-cache', apt, ['pkgnames', 'linux-image-'])
  if (result.failed) throw new UserError(`could not list the kernels of Debian ${apt.suite}: ${aptFailure(result)}`)
  return result.stdout
    .split('\n')
    .filter((name) => /^linux-image-\d.*-cloud-amd64$/.test(name))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
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

/** Downloads `pkg` and unpacks it into workDir/<name>.root; returns that folder. */
export async function downloadAndExtract(ctx: AptContext, apt: AptSuite, pkg: PackageInfo, workDir: string): Promise<string> {
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

async function extractDeb(ctx: AptContext, deb: string, into: string): Promise<void> {
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
export async function findVmlinuz(root: string): Promise<string | undefined> {
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
