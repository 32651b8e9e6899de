/**
 * Which machine an experiment acts on. OOMLAB_MACHINE=local (the default) is this host's kernel;
 * a guest is chosen by the runner that prepared one (see src/vm/lab-guest.ts).
 */
import { LocalOs } from '../os/local.js'
import type { Os } from '../os/os.js'

export interface MachineRequest {
  /** The test's name, for messages. */
  label: string
  signal?: AbortSignal
}

export async function openMachine(_req: MachineRequest): Promise<Os> {
  return new LocalOs()
}
