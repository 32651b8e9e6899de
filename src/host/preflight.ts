/**
 * Can the experiments run on this host, natively? Each check gives one line: what was found and,
 * when it fails, what to do. The checks read only; the oom.group probe creates and removes one
 * cgroup of its own.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { isSystemdHost } from './scope.js'
import { cgMountPoint, readMounts, cgCreate, cgDestroy, cgHas, cgControllers, cgRead, cgCheckParent, type Mount } from '../cgroup/cgroupfs.js'

export interface Check {
  name: string
  ok: boolean
  /** What was found (ok) or why it fails. */
  detail: string
  /** What to do about a failure. */
  fix?: string
}

export interface HostFacts {
  release: string
  uid: number
  mounts: Mount[]
  /** Active swap devices (from /proc/swaps). */
  swapDevices: number
}

export function readHostFacts(): HostFacts {
  const swaps = readFileSync('/proc/swaps', 'utf8').trim().split('\n').slice(1).filter(Boolean)
  return {
    release: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    uid: process.getuid?.() ?? -1,
    mounts: readMounts(),
    swapDevices: swaps.length,
  }
}

export type CgroupLayout =
  | { kind: 'unified'; mount: string }
  | { kind: 'hybrid'; mount: string; memoryV1?: string }
  | { kind: 'legacy'; memoryV1?: string }

/** Classifies the host's cgroup setup from its mount table. */
export function cgroupLayout(mounts: Mount[]): CgroupLayout {
  const v2 = cgMountPoint(mounts)
  const v1 = mounts.filter((m) => m.fsType === 'cgroup')
  const memoryV1 = v1.find((m) => m.superOptions.split(',').includes('memory'))?.mountPoint
  if (!v2) return { kind: 'legacy', ...(memoryV1 && { memoryV1 }) }
  if (v1.length === 0) return { kind: 'unified', mount: v2 }
  return { kind: 'hybrid', mount: v2, ...(memoryV1 && { memoryV1 }) }
}

const USE_VM = 'run `npm test` (it uses a QEMU VM where the host cannot run the experiments)'

/** The cgroup checks that need only the mount table and the cgroup2 root's controllers. */
export function checkCgroups(layout: CgroupLayout, rootControllers: string[] | undefined): Check[] {
  if (layout.kind === 'legacy')
    return [{ name: 'cgroup v2', ok: false, detail: 'no cgroup2 filesystem mounted (cgroup v1 only)', fix: `boot with systemd.unified_cgroup_hierarchy=1, or ${USE_VM}` }]
  const mounted: Check = {
    name: 'cgroup v2',
    ok: true,
    detail: `cgroup2 mounted at ${layout.mount}${layout.kind === 'hybrid' ? ' (hybrid: v1 hierarchies mounted too)' : ''}`,
  }
  if (rootControllers?.includes('memory')) return [mounted, { name: 'memory controller', ok: true, detail: 'available on cgroup v2' }]
  const where = layout.kind === 'hybrid' && layout.memoryV1 ? `bound to cgroup v1 at ${layout.memoryV1}` : 'not available'
  return [
    mounted,
    {
      name: 'memory controller',
      ok: false,
      detail: `${layout.kind} cgroups: the memory controller is ${where}, not on cgroup v2 (${layout.mount})`,
      fix: `boot with systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all, or ${USE_VM}`,
    },
  ]
}

export function checkRoot(uid: number): Check {
  return uid === 0
    ? { name: 'root', ok: true, detail: 'running as root' }
    : { name: 'root', ok: false, detail: `running as uid ${uid}; creating cgroups and setting memory.max needs root`, fix: 'run with sudo (e.g. `sudo npm test`)' }
}

export function checkSwap(swapDevices: number, hasSwapMax: boolean | undefined): Check {
  if (swapDevices === 0) return { name: 'swap', ok: true, detail: 'no swap active' }
  if (hasSwapMax) return { name: 'swap', ok: true, detail: `${swapDevices} swap device(s) active; test cgroups get memory.swap.max=0` }
  return {
    name: 'swap',
    ok: false,
    detail: `${swapDevices} swap device(s) active and the kernel has no memory.swap.max to keep the test cgroups off swap`,
    fix: `boot with swapaccount=1, or ${USE_VM}`,
  }
}

/** Creates a throwaway child cgroup to see which memory files the kernel offers there. */
async function probeMemoryFiles(mount: string): Promise<{ oomGroup: boolean; swapMax: boolean } | string> {
  const probe = join(mount, `oomlab-probe-${process.pid}`)
  try {
    await cgCreate(probe)
  } catch (err) {
    return (err as Error).message
  }
  try {
    return { oomGroup: await cgHas(probe, 'memory.oom.group'), swapMax: await cgHas(probe, 'memory.swap.max') }
  } finally {
    await cgDestroy(probe)
  }
}

/** The same, read from a cgroup systemd made (a run must not write outside its scope). */
function probeMemoryFilesReadOnly(mount: string): { oomGroup: boolean; swapMax: boolean } | undefined {
  const child = readdirSync(mount, { withFileTypes: true }).find((e) => e.isDirectory() && existsSync(join(mount, e.name, 'memory.current')))
  if (!child) return undefined
  const dir = join(mount, child.name)
  return { oomGroup: existsSync(join(dir, 'memory.oom.group')), swapMax: existsSync(join(dir, 'memory.swap.max')) }
}

async function checkTool(name: string, args: string[], pkg: string): Promise<Check> {
  try {
    const r = await execa(name, args, { reject: false, timeout: 10_000 })
    if (r.exitCode === 0) return { name, ok: true, detail: String(r.stdout).split('\n')[0] || 'present' }
    return { name, ok: false, detail: `\`${name} ${args.join(' ')}\` failed (exit ${r.exitCode})`, fix: `apt-get install ${pkg}` }
  } catch {
    return { name, ok: false, detail: 'not found in PATH', fix: `apt-get install ${pkg}` }
  }
}

/** All checks for a native run; with `firstFailure`, only up to the first that fails (deciding where to run needs no more). */
export async function preflight(facts: HostFacts = readHostFacts(), cgroupRoot?: string, o: { firstFailure?: boolean } = {}): Promise<Check[]> {
  const checks: Check[] = [{ name: 'kernel', ok: true, detail: `Linux ${facts.release}` }]
  const layout = cgroupLayout(facts.mounts)
  // The run's trees go under the user's delegated cgroup, or the mount: probe there, and only there.
  const parent = layout.kind === 'legacy' ? '' : cgroupRoot !== undefined ? cgCheckParent(cgroupRoot, layout.mount) : layout.mount
  let rootControllers: string[] | undefined
  if (layout.kind !== 'legacy') rootControllers = await cgControllers(parent).catch(() => undefined)
  const cg = checkCgroups(layout, rootControllers)
  checks.push(...cg)
  checks.push(checkRoot(facts.uid))
  if (o.firstFailure && checks.some((c) => !c.ok)) return checks
  let swapMax: boolean | undefined
  // On a systemd host the run writes only in its own delegated scope: probe without creating anything.
  const systemd = layout.kind !== 'legacy' && cgroupRoot === undefined && isSystemdHost()
  if (systemd) checks.push(await checkTool('systemd-run', ['--version'], 'systemd'), { name: 'cgroup root', ok: true, detail: 'systemd host: each run gets a scope of its own (systemd-run --scope -p Delegate=yes)' })
  else if (layout.kind !== 'legacy') checks.push({ name: 'cgroup root', ok: true, detail: `the run's trees go under ${parent}` })
  if (cg.every((c) => c.ok) && facts.uid === 0 && layout.kind !== 'legacy') {
    // memory.oom.group only shows in a cgroup whose parent delegates memory.
    const delegated = (await cgRead(parent, 'cgroup.subtree_control').catch(() => '')).includes('memory')
    const probe = systemd
      ? probeMemoryFilesReadOnly(parent)
      : delegated
        ? await probeMemoryFiles(parent)
        : `memory is not enabled in ${join(parent, 'cgroup.subtree_control')}`
    if (probe === undefined) {
      checks.push({ name: 'memory.oom.group', ok: true, detail: 'not probed: no cgroup has memory yet; systemd enables it for the run\'s scope' })
    } else if (typeof probe === 'string') {
      checks.push({ name: 'memory.oom.group', ok: false, detail: `could not probe: ${probe}`, fix: `echo +memory > ${join(parent, 'cgroup.subtree_control')}, or name a delegated cgroup with --cgroup-root` })
    } else {
      swapMax = probe.swapMax
      checks.push(
        probe.oomGroup
          ? { name: 'memory.oom.group', ok: true, detail: 'present' }
          : { name: 'memory.oom.group', ok: false, detail: `kernel ${facts.release} has no memory.oom.group (added in 4.19)`, fix: `use a kernel >= 4.19, or ${USE_VM}` },
      )
    }
  }
  checks.push(checkSwap(facts.swapDevices, swapMax))
  checks.push(await checkTool('stress-ng', ['--version'], 'stress-ng'))
  // --pdeathsig (util-linux 2.33+) ties the kernel-log reader's life to the harness's.
  checks.push(await checkTool('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], 'util-linux (2.33 or newer)'))
  return checks
}

export function formatCheck(c: Check): string {
  return c.ok ? `ok    ${c.name}: ${c.detail}` : `FAIL  ${c.name}: ${c.detail}${c.fix ? `; ${c.fix}` : ''}`
}
