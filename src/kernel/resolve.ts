/**
 * Kernel names to kernels: a Debian suite ('bookworm') or a Debian kernel ABI version ('6.1.0-50',
 * '6.12.48+deb13') to the newest matching cloud kernel, from the cache when it is there and intact,
 * else fetched from Debian's mirror. Concurrent calls in one process share one fetch.
 */
import { join } from 'node:path'
import { UserError } from '../util/errors.js'
import { cacheDir as defaultCacheDir } from '../util/paths.js'
import type { Progress } from '../util/progress.js'
import { FLAVOUR, imagePackageNames, showPackage, updateSuite, type AptContext, type AptSuite, type PackageInfo } from './apt.js'
import { fetchKernel } from './fetch.js'
import type { KernelImage } from './image.js'
import { checkCachedKernel, readRememberedSuite, rememberSuite } from './store.js'

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

const META_PACKAGE = `linux-image-${FLAVOUR}`
/** The ABI part of linux-image-<abi>-cloud-amd64: 6.1.0-50, 6.12.48+deb13, 6.12.90+deb12.1 */
const ABI_PATTERN = /^\d+\.\d+\.\d+(?:[-+.~][0-9a-z]+)*$/

interface Context extends AptContext {
  spec: string
  refresh: boolean
  /** Releases whose failed cache check was already logged. */
  reportedBroken: Set<string>
}

function contextOf(spec: string, opts: ResolveKernelOptions): Context {
  return {
    spec,
    kernelsDir: join(opts.cacheDir ?? defaultCacheDir(), 'kernels'),
    refresh: opts.refresh ?? false,
    log: (line) => opts.log?.(`kernel ${spec}: ${line}`),
    progress: (key, text, fraction) => opts.progress?.(key, `kernel ${spec}: ${text}`, fraction),
    ...(opts.signal && { signal: opts.signal }),
    reportedBroken: new Set(),
  }
}

/**
 * The kernel for a suite name (DEBIAN_SUITES) or a Debian kernel ABI version ('6.1.0-50',
 * '6.12.48+deb13'), fetched into the cache when it is not there yet.
 */
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
  const remembered = await readRememberedSuite(ctx.kernelsDir, suite)
  return remembered && cachedKernelOrReport(ctx, remembered.release)
}

async function cachedKernelOrReport(ctx: Context, release: string): Promise<KernelImage | undefined> {
  const cached = await checkCachedKernel(ctx.kernelsDir, release)
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
  await rememberSuite(ctx.kernelsDir, {
    suite,
    release: kernel.release,
    debianPackage: pkg.name,
    debianVersion: pkg.version,
    resolvedAt: new Date().toISOString(),
  })
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
  const cached = await checkCachedKernel(ctx.kernelsDir, expectedRelease)
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
