/**
 * From what the user said (flags, then the variables a user sets) to the run's configuration: checked
 * before anything runs, so every mistake is one line and exit code 2.
 */
import { existsSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { availableParallelism } from 'node:os'
import { UserError } from '../util/errors.js'
import { projectRoot } from '../util/paths.js'
import { SPEC_FILE } from '../report/paths.js'
import { checkReportDir, defaultReportRoot, runDirOf } from '../report/folder.js'
import { parseKernelSpec, DEFAULT_KERNEL } from '../kernel/resolve.js'
import { checkKernelSrc } from '../kernel/build/tree.js'
import { cgMountPoint, cgCheckParent } from '../cgroup/cgroupfs.js'
import { envSwitch, oneOf, wholeNumber } from '../cli/flags.js'
import { newRunId, workersOf, type GuestMachine, type KernelTarget, type RunConfig } from './config.js'
import { decideMachine } from './machine.js'

/** What a command asks of a run; absent fields fall back to the user's variables, then to defaults. */
export interface RunRequest {
  vm?: boolean
  native?: boolean
  cgroupRoot?: string
  /** Kernels named explicitly (a matrix, or --kernel / --kernel-image); they imply guests. */
  kernels?: KernelTarget[]
  accel?: string
  memoryMiB?: number
  cpus?: number
  append?: string[]
  bootTimeoutMs?: number
  refresh?: boolean
  runTimeoutMs?: number
  report?: string
  jobs?: number
  /** Parts of the names of the article's specs (none: all of them). */
  filters?: string[]
  /** Spec files of one's own, instead of the article's. */
  specFiles?: string[]
  /** The CLI selects spec files itself; under plain `vitest`, vitest does. */
  selectSpecs: boolean
  canStartScope: boolean
  /** Who runs vitest: the CLI (it claims the report folder and writes the report), or vitest itself. */
  by: RunConfig['by']
}

/** The article's spec files in the harness (or the installed package), sorted. */
export function articleSpecs(): string[] {
  const dir = join(projectRoot, 'experiments')
  return (existsSync(dir) ? readdirSync(dir) : []).filter((f) => SPEC_FILE.test(f) && !f.endsWith('.d.ts')).sort().map((f) => join(dir, f))
}

/** The spec files a run selects: its own, or the article's whose path holds one of the filters. Selecting none is a usage error. */
export function selectSpecs(filters: string[], own: string[]): string[] {
  if (own.length > 0) {
    if (filters.length > 0) throw new UserError(`name spec files or filters of the article's specs, not both (${filters[0]} is a filter)`)
    for (const f of own) {
      if (!SPEC_FILE.test(f)) throw new UserError(`${f}: a spec of one's own is a file named *.spec.ts (or .spec.js, .spec.mts)`)
      if (!existsSync(f)) throw new UserError(`${f}: no such spec file`)
    }
    return own.map((f) => resolve(f))
  }
  for (const f of filters) if (!/^[\w.-]+$/.test(f)) throw new UserError(`spec filter ${JSON.stringify(f)}: use part of a spec file name, e.g. 02-leaf`)
  const all = articleSpecs()
  if (all.length === 0) throw new UserError(`no experiment specs in ${join(projectRoot, 'experiments')}: the installation is incomplete`, 1)
  const chosen = filters.length === 0 ? all : all.filter((p) => filters.some((x) => `experiments/${p.replace(/^.*\//, '')}`.includes(x)))
  if (chosen.length === 0) {
    const names = all.map((p) => p.replace(/^.*\//, '').replace(SPEC_FILE, ''))
    throw new UserError(`spec filter ${filters.map((f) => JSON.stringify(f)).join(', ')} selects none of the ${all.length} specs (${names.join(', ')})`)
  }
  return chosen
}

/**
 * cgroup2 mount options a kernel name can carry as a cell of its own: "bookworm+memory_localevents" is
 * bookworm's guest with cgroup2 mounted with that option (the guest's /init reads oomlab.cgroup2=).
 */
export const CGROUP2_OPTIONS = ['memory_localevents', 'memory_recursiveprot', 'memory_hugetlb_accounting', 'pids_localevents', 'favordynmods', 'nsdelegate'] as const

/** A kernel as named: "bookworm", "6.1.0-50", or a cell "bookworm+memory_localevents" (options after '+'). */
export function kernelTargetOf(name: string): KernelTarget {
  const options: string[] = []
  let kernel = name
  for (let m; (m = /^(.+)\+([a-z_]+)$/.exec(kernel)) && (CGROUP2_OPTIONS as readonly string[]).includes(m[2]!); kernel = m[1]!) options.unshift(m[2]!)
  if (options.length === 0) return { name }
  return { name, kernel, append: [`oomlab.cgroup2=${options.join(',')}`] }
}

/** The variables a user sets for a run, checked: a bad value is one line. */
function runVariables(env: NodeJS.ProcessEnv) {
  const memory = wholeNumber('OOMLAB_MEMORY', env.OOMLAB_MEMORY || undefined, 512, 65536)
  return {
    vm: envSwitch('OOMLAB_VM', env.OOMLAB_VM) ?? false,
    cgroupRoot: env.OOMLAB_CGROUP_PARENT || undefined,
    kernel: env.OOMLAB_KERNEL || undefined,
    kernelImage: env.OOMLAB_KERNEL_IMAGE || undefined,
    kernelSrc: env.OOMLAB_KERNEL_SRC || undefined,
    accel: env.OOMLAB_ACCEL || undefined,
    memoryMiB: memory,
    append: (env.OOMLAB_APPEND ?? '').split(/\s+/).filter(Boolean),
    jobs: wholeNumber('OOMLAB_JOBS', env.OOMLAB_JOBS || undefined, 1, 64),
    report: env.OOMLAB_REPORT_DIR || undefined,
    restoreAhead: envSwitch('OOMLAB_RESTORE_AHEAD', env.OOMLAB_RESTORE_AHEAD),
  }
}

export async function resolveRun(req: RunRequest, env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<RunConfig> {
  const vars = runVariables(env)
  // Plain vitest's processes each resolve the run: they agree on its id and folder by not deriving them from time.
  const id = req.by === 'vitest' ? 'vitest' : newRunId()
  const cgroupRoot = req.cgroupRoot ?? vars.cgroupRoot
  const envKernels: KernelTarget[] = vars.kernelSrc
    ? [{ name: resolve(vars.kernelSrc), src: resolve(vars.kernelSrc) }]
    : vars.kernelImage
      ? [{ name: resolve(vars.kernelImage), image: resolve(vars.kernelImage) }]
      : vars.kernel
        ? [kernelTargetOf(vars.kernel)]
        : []
  const named = req.kernels ?? envKernels
  const append = req.append ?? vars.append
  const vm = (req.vm ?? vars.vm) || named.length > 0 || append.length > 0
  const native = req.native === true || cgroupRoot !== undefined
  if (vm && req.native) throw new UserError(req.vm ? '--vm and --native exclude each other' : '--native runs on the host kernel: drop --kernel/--kernel-image/--append (or OOMLAB_VM), or use --vm')
  if (cgroupRoot !== undefined && vm) throw new UserError('--cgroup-root (OOMLAB_CGROUP_PARENT) is for native runs: drop --vm, OOMLAB_VM and the kernel options')
  if (cgroupRoot !== undefined) {
    const mount = cgMountPoint()
    if (!mount) throw new UserError('--cgroup-root: no cgroup2 filesystem is mounted on this host')
    cgCheckParent(cgroupRoot, mount)
  }
  for (const k of named) {
    if (k.src !== undefined) checkKernelSrc(k.src)
    else if (k.image !== undefined) {
      if (!existsSync(k.image)) throw new UserError(`--kernel-image ${k.image}: no such file`)
    } else parseKernelSpec(k.kernel ?? k.name)
  }
  const accel = oneOf(req.accel !== undefined ? '--accel' : 'OOMLAB_ACCEL', req.accel ?? vars.accel, ['auto', 'kvm', 'tcg'] as const, 'auto')
  const specs = req.selectSpecs ? selectSpecs(req.filters ?? [], req.specFiles ?? []) : []
  const reportArg = req.report ?? vars.report
  const report = reportArg !== undefined ? checkReportDir(reportArg, { forbidden: [projectRoot] }) : req.by === 'vitest' ? join(defaultReportRoot(), 'vitest') : runDirOf(defaultReportRoot(), id)
  const guest: Omit<GuestMachine, 'kind'> = {
    accel,
    ...((req.memoryMiB ?? vars.memoryMiB) !== undefined && { memoryMiB: (req.memoryMiB ?? vars.memoryMiB)! }),
    ...(req.cpus !== undefined && { cpus: req.cpus }),
    append,
    ...(req.bootTimeoutMs !== undefined && { bootTimeoutMs: req.bootTimeoutMs }),
    refresh: req.refresh === true,
  }
  const machine = await decideMachine({ vm, native, ...(cgroupRoot !== undefined && { cgroupRoot }), guest, canStartScope: req.canStartScope }, log)
  const kernels = machine.kind === 'guest' ? (named.length > 0 ? named : [{ name: DEFAULT_KERNEL }]) : []
  const jobs = req.jobs ?? vars.jobs ?? availableParallelism()
  if (machine.kind === 'guest' && req.by === 'cli' && kernels.length === 1) machine.restoreAhead = vars.restoreAhead ?? coresToSpare(workersOf({ jobs, specs, kernels }))
  return {
    id,
    by: req.by,
    machine,
    kernels,
    specs,
    jobs,
    report,
    ...(req.runTimeoutMs !== undefined && { runTimeoutMs: req.runTimeoutMs }),
  }
}

/**
 * Whether guests restored ahead would have cores of their own: the CLI and each of vitest's workers keep a
 * core busy while vitest starts, and restores that share those cores only slow its start
 * (docs/performance.md, "Guests restored ahead, on 2 cores").
 */
export function coresToSpare(workers: number, cores = availableParallelism()): boolean {
  return cores > workers + 1
}
