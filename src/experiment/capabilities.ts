/**
 * What a kernel must expose, by the version that brought it (mainline): probing alone would excuse a
 * kernel that lost a feature it must have. Debian's kernels are held to it; a kernel of unknown origin
 * (--kernel-image) is probed, and the report says what it lacks.
 */
export type Capability = 'cgroup.kill' | 'memory.events.local' | 'memory.swap.max' | 'oom_group_kill'

export const SINCE: Record<Capability, [number, number]> = {
  'memory.swap.max': [4, 5],
  'memory.events.local': [5, 2],
  'cgroup.kill': [5, 14],
  oom_group_kill: [5, 17],
}

export function kernelVersion(release: string): [number, number] | undefined {
  const m = release.match(/^(\d+)\.(\d+)/)
  return m ? [Number(m[1]), Number(m[2])] : undefined
}

/** Debian's own builds: "6.1.0-50-cloud-amd64", "6.12.117+deb13-cloud-amd64". */
export function isDebianKernel(release: string): boolean {
  return /^\d+\.\d+\.\d+(-\d+|\+deb\d+)-(cloud-)?amd64$/.test(release)
}

/** Whether `release` must expose `c`: a Debian kernel at or after the version that added it. */
export function mustHave(release: string, c: Capability): boolean {
  const v = kernelVersion(release)
  const [major, minor] = SINCE[c]
  return isDebianKernel(release) && v !== undefined && (v[0] > major || (v[0] === major && v[1] >= minor))
}
