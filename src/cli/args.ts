/** Command-line parsing: every flag checked, every mistake one line and exit code 2. */
import { parseArgs } from 'node:util'
import { UserError } from '../util/errors.js'
import { parseKernelSpec } from '../kernel/resolve.js'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { SPEC_FILE } from '../report/paths.js'
import { cgMountPoint, cgCheckParent } from '../cgroup/cgroupfs.js'

export const RUN_FLAGS = {
  vm: { type: 'boolean' },
  native: { type: 'boolean' },
  kernel: { type: 'string' },
  'kernel-image': { type: 'string' },
  accel: { type: 'string' },
  memory: { type: 'string' },
  cpus: { type: 'string' },
  append: { type: 'string' },
  'boot-timeout': { type: 'string' },
  timeout: { type: 'string' },
  report: { type: 'string' },
  'cgroup-root': { type: 'string' },
  refresh: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const


export interface RunArgs {
  vm: boolean
  native: boolean
  kernel?: string
  kernelImage?: string
  accel: 'auto' | 'kvm' | 'tcg'
  memoryMiB?: number
  cpus?: number
  append: string[]
  bootTimeoutMs?: number
  runTimeoutMs?: number
  report?: string
  /** Native runs: the cgroup under which the run's tree goes (default: the cgroup2 mount). */
  cgroupRoot?: string
  refresh: boolean
  filters: string[]
  /** Spec files named by path (experiments of one's own), absolute. */
  specs: string[]
  help: boolean
}

/** A flag's whole number within [min, max], or undefined when the flag is absent. */
export function positiveInt(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < min || n > max) throw new UserError(`--${flag} ${JSON.stringify(value)}: expected a whole number from ${min} to ${max}`)
  return n
}

export function parseRunArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): RunArgs {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: RUN_FLAGS, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UserError(`${(err as Error).message.split(/\.\s/)[0]} (see --help)`)
  }
  const v = parsed.values
  const accel = v.accel ?? 'auto'
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') throw new UserError(`--accel ${JSON.stringify(accel)}: expected auto, kvm or tcg`)
  const forceVm = v.vm === true || /^(1|true|yes)$/i.test(env.OOMLAB_VM ?? '')
  if (forceVm && v.native) throw new UserError('--vm and --native exclude each other')
  if (v.kernel !== undefined && v['kernel-image'] !== undefined) throw new UserError('--kernel and --kernel-image exclude each other')
  const cgroupRoot = v['cgroup-root'] ?? (env.OOMLAB_CGROUP_PARENT || undefined)
  const native = v.native === true || cgroupRoot !== undefined
  if (cgroupRoot !== undefined && forceVm) throw new UserError('--cgroup-root is for native runs: drop --vm (and OOMLAB_VM)')
  if (native && (v.kernel !== undefined || v['kernel-image'] !== undefined || v.append !== undefined))
    throw new UserError('--native and --cgroup-root run on the host kernel: drop --kernel/--kernel-image/--append, or use --vm')
  if (cgroupRoot !== undefined) {
    const mount = cgMountPoint()
    if (!mount) throw new UserError('--cgroup-root: no cgroup2 filesystem is mounted on this host')
    cgCheckParent(cgroupRoot, mount)
  }
  // A positional is a spec file of one's own when it looks like a path to one, else part of an article spec's name.
  const isSpecPath = (f: string) => f.includes('/') || (SPEC_FILE.test(f) && existsSync(f))
  const specs = parsed.positionals.filter(isSpecPath).map((f) => resolve(f))
  const filters = parsed.positionals.filter((f) => !isSpecPath(f))
  for (const f of filters) if (!/^[\w.-]+$/.test(f)) throw new UserError(`spec filter ${JSON.stringify(f)}: use part of a spec file name, e.g. 02-leaf`)
  for (const f of specs) {
    if (!SPEC_FILE.test(f)) throw new UserError(`${f}: a spec of one's own is a file named *.spec.ts (or .spec.js, .spec.mts)`)
    if (!existsSync(f)) throw new UserError(`${f}: no such spec file`)
  }
  if (specs.length > 0 && filters.length > 0) throw new UserError(`name spec files or filters of the article's specs, not both (${filters[0]} is a filter)`)
  // Fail on a bad kernel name or image now, not after the unit tests.
  if (v.kernel !== undefined) parseKernelSpec(v.kernel)
  if (v['kernel-image'] !== undefined && !existsSync(v['kernel-image'])) throw new UserError(`--kernel-image ${v['kernel-image']}: no such file`)
  const appendWords = (v.append ?? '').split(/\s+/).filter(Boolean)
  const kernelSelected = v.kernel !== undefined || v['kernel-image'] !== undefined || appendWords.length > 0
  return {
    // Choosing a kernel or its command line only makes sense in a VM.
    vm: forceVm || kernelSelected,
    native,
    ...(cgroupRoot !== undefined && { cgroupRoot }),
    ...(v.kernel !== undefined && { kernel: v.kernel }),
    ...(v['kernel-image'] !== undefined && { kernelImage: v['kernel-image'] }),
    accel,
    ...(v.memory !== undefined && { memoryMiB: positiveInt('memory', v.memory, 512, 65536) }),
    ...(v.cpus !== undefined && { cpus: positiveInt('cpus', v.cpus, 1, 64) }),
    append: appendWords,
    ...(v['boot-timeout'] !== undefined && { bootTimeoutMs: positiveInt('boot-timeout', v['boot-timeout'], 1, 3600)! * 1000 }),
    ...(v.timeout !== undefined && { runTimeoutMs: positiveInt('timeout', v.timeout, 1, 86400)! * 1000 }),
    ...(v.report !== undefined && { report: v.report }),
    refresh: v.refresh === true,
    filters,
    specs,
    help: v.help === true,
  }
}

export const USAGE = `usage: oomlab <command> [options] [spec filter... | ./my-layout.spec.ts...]

commands:
  reproduce   run the article's experiments (natively if the host can, else in a VM) and print who survived
  test        unit tests, then the experiments as above; exits non-zero on any failure
  matrix      every experiment on each kernel (default: bullseye bookworm trixie sid) in VMs, one report
  doctor      say whether this host can run the experiments natively, and why not
  bench       the harness against a plain shell script, kill-detection latency, boot, matrix; checks the targets
  soak        fault tests, --boots N (100) guest boots, then the specs in restored guests until --runs N (200) pass in a row
  kernels     list the kernels you can name and the ones in the cache
  cache       what the cache holds (sizes, ages, what is stale); "cache prune" removes the stale;
              "cache key --kernel NAME" prints kernel=<release> (CI's cache key: asks the mirror, downloads nothing)

options (reproduce, test, bench):
  --vm                  always use the VM (also OOMLAB_VM=1)
  --native              never use the VM; fail if the host cannot run the experiments
  --kernel NAME         Debian suite (bullseye, bookworm, bookworm-backports, trixie, sid) or version (6.1.0-50); default bookworm
  --kernel-image PATH   boot your own bzImage instead
  --accel auto|kvm|tcg  default auto: KVM only if a probe guest really boots with it
  --memory MiB          guest memory (default 512)       --cpus N   vCPUs per guest (default 1)
  --append "ARGS"       extra guest kernel command line
  --boot-timeout SEC    deadline for a guest to boot when its snapshot is made (default 60)
  --timeout SEC         deadline for the whole run of the experiments (default: none; each test has its own)
  --report DIR          where evidence and the summary go (default reports/latest)
  --cgroup-root PATH    native runs: create the run's cgroups below this delegated cgroup only
  --refresh             ask Debian's mirror again for the newest kernel of a suite`
