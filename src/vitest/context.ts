/**
 * The run's configuration on vitest's side. In vitest's main process (config, global setup, reporters)
 * it is the file OOMLAB_RUN names when oomlab started vitest, else the one resolved here once from the
 * environment (plain `vitest`); workers get what they need from the global setup (`inject`).
 */
import { readRunConfig, RUN_ENV, type RunConfig } from '../run/config.js'
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

const KEY = Symbol.for('oom-group-lab.run')
type Holder = { [KEY]?: Promise<RunConfig> }

/**
 * The run's configuration in this process: vitest loads its config, global setup and reporters as separate
 * module graphs, so it is kept on the process, not in a module.
 */
export function currentRun(env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = () => undefined): Promise<RunConfig> {
  const holder = globalThis as Holder
  // Resolving (preflight, kernel names) is imported only where there is no configuration to read: vitest's start is on every run's path.
  holder[KEY] ??= env[RUN_ENV] ? Promise.resolve(readRunConfig(env[RUN_ENV])) : import('../run/resolve.js').then(({ resolveRun }) => resolveRun({ selectSpecs: false, canStartScope: false, by: 'vitest' }, env, log))
  return holder[KEY]
}
