/**
 * The run's configuration on vitest's side. In vitest's main process (config, global setup, reporters) it
 * is the one oomlab handed over when it runs vitest in its own process, else the one resolved here once from
 * the environment (plain `vitest`); workers get what they need from what their project provides (`inject`).
 */
import { guestChoiceOf, kernelOfProject, type RunConfig } from '../run/config.js'
import { evidenceKernelOf } from '../run/report.js'
import type { PreparedGuest } from '../vm/restore.js'
import type { GuestChoice } from '../vm/prepare.js'

/** What a worker needs of the run: where its evidence goes, and the machine to act on. */
export interface WorkerRun {
  id: string
  report: string
  /** The kernel its evidence is filed under (a matrix's), none on one kernel. */
  evidenceKernel?: string
}

/**
 * A guest run's machine: the lab image's guest, the guests of other images a spec may ask for (prepared by
 * the CLI; a worker prepares one that is missing from `choice`).
 */
export type MachineChoice = { where: 'local'; cgroupRoot?: string } | { where: 'guest'; guest: PreparedGuest; images?: Record<string, PreparedGuest>; choice: GuestChoice }

declare module 'vitest' {
  export interface ProvidedContext {
    oomlabMachine: MachineChoice
    oomlabRun: WorkerRun
  }
}

/**
 * What an experiments project's workers are given of the run: where their evidence goes, and their machine,
 * which is missing only for a guest not prepared yet (plain vitest's global setup prepares it).
 */
export function provisionsOf(run: RunConfig, project: string): { run: WorkerRun; machine?: MachineChoice } {
  const kernel = kernelOfProject(run, project)
  const evidenceKernel = evidenceKernelOf(run, kernel)
  const given = { id: run.id, report: run.report, ...(evidenceKernel !== undefined && { evidenceKernel }) }
  if (run.machine.kind === 'native') return { run: given, machine: { where: 'local', ...(run.machine.cgroupRoot !== undefined && { cgroupRoot: run.machine.cgroupRoot }) } }
  if (!kernel) throw new Error(`no kernel of this run is named by the project ${project}`)
  const prepared = run.prepared?.[kernel.name]
  if (!prepared) return { run: given }
  const images = run.preparedImages?.[kernel.name]
  return { run: given, machine: { where: 'guest', guest: prepared, choice: guestChoiceOf(run.machine, kernel), ...(images && { images }) } }
}

/** vitest loads its config, global setup and reporters as separate module graphs: the run is kept on the process, not in a module. */
const KEY = Symbol.for('oom-group-lab.run')
const STOPPED = Symbol.for('oom-group-lab.stopped')
type Holder = { [KEY]?: Promise<RunConfig>; [STOPPED]?: AbortSignal }

/**
 * oomlab running vitest in its own process hands the run over here, with the signal that stops it: once it
 * is aborted, what vitest still reports (tests cut short by the interrupt) is not this run's result.
 */
export function provideRun(run: RunConfig, stopped?: AbortSignal): void {
  const holder = globalThis as Holder
  holder[KEY] = Promise.resolve(run)
  holder[STOPPED] = stopped
}

/** Whether the run in this process was stopped (an interrupt, its deadline). */
export function runStopped(): boolean {
  return (globalThis as Holder)[STOPPED]?.aborted === true
}

/** The run's configuration in this process: the one handed over, else resolved from the environment once (plain `vitest`). */
export function currentRun(env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = () => undefined): Promise<RunConfig> {
  const holder = globalThis as Holder
  // Resolving (preflight, kernel names) is imported only where no run was handed over: vitest's start is on every run's path.
  holder[KEY] ??= import('../run/resolve.js').then(({ resolveRun }) => resolveRun({ selectSpecs: false, canStartScope: false, by: 'vitest' }, env, log))
  return holder[KEY]
}
