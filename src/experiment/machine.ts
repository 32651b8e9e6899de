/**
 * Which machine the experiments act on, decided once per run by vitest's global setup
 * (src/experiment/global-setup.ts) and handed to each worker: this host's kernel, or a guest
 * restored pristine from a snapshot for every experiment.
 */
import { inject } from 'vitest'
import { LocalOs } from '../os/local.js'
import { openGuestOs, type PreparedGuest } from '../vm/restore.js'
import type { Os } from '../os/os.js'
import { UserError } from '../util/errors.js'

export type MachineChoice = { where: 'local' } | { where: 'guest'; guest: PreparedGuest }

declare module 'vitest' {
  export interface ProvidedContext {
    oomlabMachine: MachineChoice
  }
}

export interface MachineRequest {
  /** The test's name, for messages. */
  label: string
  signal?: AbortSignal
}

const say = (line: string) => process.stderr.write(`oomlab: ${line}\n`)

/**
 * Run by plain `vitest` (no oomlab config, so no global setup), each worker chooses for itself, once: the
 * same choice, and the guest's snapshot is cached and made by one process while the others wait.
 */
let chosenHere: Promise<MachineChoice> | undefined

/** Whether the run's config chose the machine (oomlab's global setup), rather than each worker. */
export const machineProvided = () => inject('oomlabMachine') !== undefined

/** The choice global setup would make, made here; a user's mistake is one line, not a stack per test. */
async function chooseHere(): Promise<MachineChoice> {
  const { chooseMachine } = await import('./global-setup.js')
  try {
    return await chooseMachine(process.env)
  } catch (err) {
    if (!(err instanceof UserError)) throw err
    const short = new Error(`oomlab: ${err.message}`)
    short.stack = short.message
    throw short
  }
}

export async function openMachine(req: MachineRequest): Promise<Os> {
  const choice = inject('oomlabMachine') ?? (await (chosenHere ??= chooseHere()))
  if (choice.where === 'local') return new LocalOs()
  return openGuestOs(choice.guest, { log: (line) => say(`${req.label}: ${line}`), ...(req.signal && { signal: req.signal }) })
}
