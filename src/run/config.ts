/**
 * The run's configuration: resolved once (by the CLI from its flags, or from the environment under plain
 * `vitest`), then handed on in one form: to vitest in the CLI's own process (src/vitest/start.ts), written
 * beside the report as run.json (the record of what ran, and what a delegated scope's process is started
 * with). Nothing here imports vitest.
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import type { PreparedGuest } from '../vm/restore.js'
import type { GuestChoice } from '../vm/prepare.js'

/** Natively: under a delegated cgroup named by the user, or a systemd scope the CLI starts for the run. */
export type Machine = { kind: 'native'; cgroupRoot?: string; scope?: string } | GuestMachine

/** A guest run's machine: how each kernel's guest is made. */
export interface GuestMachine {
  kind: 'guest'
  accel: 'auto' | 'kvm' | 'tcg'
  memoryMiB?: number
  cpus?: number
  /** Extra words on every guest's kernel command line. */
  append: string[]
  /** From QEMU's start to the agent ready, when a snapshot is made. */
  bootTimeoutMs?: number
  /** Ask Debian's mirror again for the newest kernel of a suite. */
  refresh: boolean
  /** The run's first guests restored while vitest starts (src/vm/ahead.ts); a run on one kernel only. */
  restoreAhead?: boolean
}


/** A kernel a guest run boots: a Debian suite or version, an image of one's own, or one built from a source tree. */
export interface KernelTarget {
  /** What the user named (suite, version, cell, or the image's or tree's path): the report's column and the project's name. */
  name: string
  /** The Debian suite or version to boot, when `name` says more (a cell: "bookworm+memory_localevents"). */
  kernel?: string
  /** A bzImage of one's own. */
  image?: string
  /** A source tree (or its tarball) that oomlab builds (src/kernel/build/). */
  src?: string
  /** Extra words on the guest's kernel command line for this target (a matrix cell with a mount option). */
  append?: string[]
}

export interface RunConfig {
  /** Sortable and unique: when it started and by which process. */
  id: string
  /** Who runs vitest: the CLI (it claims the report folder and writes the final report), or plain `vitest` (its global setup and reporter do). */
  by: 'cli' | 'vitest'
  machine: Machine
  /** Guest runs: one vitest project per kernel. Native runs: empty (the host's kernel). */
  kernels: KernelTarget[]
  /** The spec files the run selected, absolute; empty means vitest's own default (plain `vitest`). */
  specs: string[]
  /** Experiments at once. */
  jobs: number
  /** The run's report folder, absolute. */
  report: string
  /** Deadline for the whole run of the experiments (ms), if any. */
  runTimeoutMs?: number
  /** Filled in by the CLI once prepared: a guest per kernel name (with where its guests restored ahead are held). */
  prepared?: Record<string, PreparedGuest>
  /** Guests of the other images the specs ask for (`@oomlab-image`), per kernel name, then image name. */
  preparedImages?: Record<string, Record<string, PreparedGuest>>
}

/** vitest's workers in a run: one per job, no more than the run has spec files (plain vitest's default: jobs). */
export function workersOf(run: Pick<RunConfig, 'jobs' | 'specs' | 'kernels'>): number {
  return run.specs.length === 0 ? run.jobs : Math.min(run.jobs, run.specs.length * Math.max(1, run.kernels.length))
}

/** A new run's id: UTC time to the second, then the process id. */
export function newRunId(now = new Date(), pid = process.pid): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}-${pid}`
}

/** The project name of a kernel's experiments: `experiments` for a run on one kernel, else `experiments@<name>`. */
export function projectOf(config: Pick<RunConfig, 'kernels'>, kernel: KernelTarget | undefined): string {
  return config.kernels.length > 1 && kernel ? `experiments@${kernel.name}` : 'experiments'
}

/** The kernel target of an experiments project (undefined natively). */
export function kernelOfProject(config: Pick<RunConfig, 'kernels'>, project: string): KernelTarget | undefined {
  if (config.kernels.length <= 1) return config.kernels[0]
  return config.kernels.find((k) => `experiments@${k.name}` === project)
}

/** Writes the configuration beside the run's report (it is part of the record of what ran). */
export function writeRunConfig(config: RunConfig): string {
  const path = join(config.report, 'run.json')
  writeFileSync(`${path}.partial`, `${JSON.stringify(config, null, 2)}\n`)
  renameSync(`${path}.partial`, path)
  return path
}

export function readRunConfig(path: string): RunConfig {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RunConfig
  } catch (err) {
    throw new Error(`cannot read the run's configuration ${path}: ${(err as Error).message}`)
  }
}

/** What preparing a kernel's guest is asked: the run's machine, with the kernel's own extra command line. */
export function guestChoiceOf(m: GuestMachine, k: KernelTarget): GuestChoice {
  return {
    ...(k.src !== undefined ? { kernelSrc: k.src } : k.image !== undefined ? { kernelImage: k.image } : { kernel: k.kernel ?? k.name }),
    accel: m.accel,
    ...(m.memoryMiB !== undefined && { memoryMiB: m.memoryMiB }),
    ...(m.cpus !== undefined && { cpus: m.cpus }),
    append: [...m.append, ...(k.append ?? [])],
    refresh: m.refresh,
    ...(m.bootTimeoutMs !== undefined && { bootTimeoutMs: m.bootTimeoutMs }),
  }
}
