/**
 * What a kernel must expose, by the upstream version that brought it: probing alone would excuse a
 * kernel that lost a feature it must have. Every kernel is held to it, whatever built it (Debian, a
 * backport, Ubuntu, a bzImage of one's own): its upstream version comes from its release string
 * ('6.1.0-50-cloud-amd64', '6.1.0-0.deb11.17-amd64', '5.15.0-91-generic', '4.19.304'), which the
 * bzImage header and `uname -r` both give. Each version below was checked against the commit that
 * brought the feature (its id beside it) and, for 4.19, against a run of 4.19.304.
 */
export type Version = readonly [major: number, minor: number]

export interface Feature {
  since: Version
  /** The upstream commit that brought it. */
  commit: string
  /**
   * Whether the version alone decides it. memory.swap.max also needs CONFIG_SWAP (and before 5.8 swap
   * accounting on): a kernel without it is probed and noted, not failed.
   */
  byVersion: boolean
}

/** The features the Lab probes in each cgroup it makes (files, and a key of memory.events). */
export type Capability = 'memory.oom.group' | 'memory.swap.max' | 'memory.events.local' | 'cgroup.kill' | 'oom_group_kill' | 'memory.peak'

export const FEATURES: Record<Capability, Feature> = {
  'memory.oom.group': { since: [4, 19], commit: '3d8b38eb81ca', byVersion: true },
  'memory.swap.max': { since: [4, 5], commit: '37e84351198b', byVersion: false },
  'memory.events.local': { since: [5, 2], commit: '1e577f970f66', byVersion: true },
  'cgroup.kill': { since: [5, 14], commit: '661ee6280931', byVersion: true },
  oom_group_kill: { since: [5, 17], commit: 'b6bf9abb0aa4', byVersion: true },
  'memory.peak': { since: [5, 19], commit: '8e20d4b33266', byVersion: true },
}

export const CAPABILITIES = Object.keys(FEATURES) as Capability[]

/** The version each capability came in (kept for callers that want the number alone). */
export const SINCE: Record<Capability, Version> = Object.fromEntries(CAPABILITIES.map((c) => [c, FEATURES[c].since])) as Record<Capability, Version>

/**
 * Since 5.2 (9852ae3fe529) memory.events counts an event in the cgroup where it happened and in every
 * ancestor; before, only where it happened, as memory.events.local and the memory_localevents mount
 * option do since. 4.19.304 counts a group kill of a parent's two children in the children alone.
 */
export const HIERARCHICAL_EVENTS_SINCE: Version = [5, 2]

/** Whether a zstd initramfs boots (CONFIG_RD_ZSTD, a30d8a39f057): for the guest image. */
export const ZSTD_INITRAMFS_SINCE: Version = [5, 9]

/** The upstream major.minor of a kernel release, or undefined when the release does not start with one. */
export function kernelVersion(release: string): Version | undefined {
  const m = release.match(/^(\d+)\.(\d+)/)
  return m ? [Number(m[1]), Number(m[2])] : undefined
}

export function atLeast(v: Version, since: Version): boolean {
  return v[0] > since[0] || (v[0] === since[0] && v[1] >= since[1])
}

export const formatVersion = (v: Version) => `${v[0]}.${v[1]}`

/** Whether `release` must expose `c`: its upstream version is at or after the one that brought it. */
export function mustHave(release: string, c: Capability): boolean {
  const v = kernelVersion(release)
  return FEATURES[c].byVersion && v !== undefined && atLeast(v, FEATURES[c].since)
}

/** For each capability, whether the kernel's version must have it. */
export function expectedCapabilities(release: string): Record<Capability, boolean> {
  return Object.fromEntries(CAPABILITIES.map((c) => [c, mustHave(release, c)])) as Record<Capability, boolean>
}

/** Why a kernel that lacks `c` fails: both the feature and the version, in one line. */
export function missingCapability(release: string, c: Capability): string {
  const v = kernelVersion(release)
  return `kernel ${release} (Linux ${v ? formatVersion(v) : '?'}) has no ${c}, which every kernel since ${formatVersion(FEATURES[c].since)} has (${FEATURES[c].commit})`
}

export type CapabilityVerdict =
  | { kind: 'present' }
  /** Lacking, and its version need not have it: the spec adapts (or, for memory.oom.group, cannot run). */
  | { kind: 'absent'; why: string }
  /** Lacking though its version must have it: the spec that needs it fails. */
  | { kind: 'missing'; why: string }

/** What a kernel's lack of `c` means, given its release. */
export function capabilityVerdict(release: string, c: Capability, present: boolean): CapabilityVerdict {
  if (present) return { kind: 'present' }
  if (mustHave(release, c)) return { kind: 'missing', why: missingCapability(release, c) }
  const { since, byVersion } = FEATURES[c]
  return { kind: 'absent', why: `${c}: not exposed by kernel ${release} (it came in ${formatVersion(since)}${byVersion ? '' : "; the kernel's configuration decides it too"})` }
}

/**
 * Whether memory.events counts only a cgroup's own events: kernels before 5.2, or a cgroup2 mount with
 * memory_localevents. Then a tree's counts add up, not a parent's.
 */
export function eventsCountLocally(release: string, cgroup2Options?: string): boolean {
  if (cgroup2Options?.split(',').includes('memory_localevents')) return true
  const v = kernelVersion(release)
  return v !== undefined && !atLeast(v, HIERARCHICAL_EVENTS_SINCE)
}
