/**
 * The worker's side: the machine an experiment acts on and where its evidence goes, as the run's global
 * setup (src/vitest/global-setup.ts) provided them: this host's kernel, or a guest restored pristine
 * from a snapshot for every experiment.
 */
import { inject } from 'vitest'
import type { Os } from '../os/os.js'
import { UserError } from '../util/errors.js'
import type { MachineChoice, WorkerRun } from './context.js'
import { guestChoiceOf } from '../run/config.js'

export interface MachineRequest {
  /** The test's name, for messages. */
  label: string
  signal?: AbortSignal
}

const say = (line: string) => process.stderr.write(`oomlab: ${line}\n`)

/** Whether the run's config provided the machine (oomlab's global setup), rather than each worker choosing. */
export const machineProvided = () => inject('oomlabMachine') !== undefined

/**
 * Under a vitest config of one's own (no oomlab global setup), each worker resolves the run the same way
 * the global setup would, once: the same decision, the same guest (its snapshot is made by one process
 * while the others wait).
 */
let here: Promise<{ machine: MachineChoice; run: WorkerRun }> | undefined

async function resolveHere(): Promise<{ machine: MachineChoice; run: WorkerRun }> {
  const { currentRun } = await import('./context.js')
  const { prepareLabGuest } = await import('../vm/prepare.js')
  try {
    const resolved = await currentRun()
    const run = { id: resolved.id, report: resolved.report }
    const m = resolved.machine
    if (m.kind === 'native') return { run, machine: { where: 'local', ...(m.cgroupRoot !== undefined && { cgroupRoot: m.cgroupRoot }) } }
    const k = resolved.kernels[0]!
    const guest = await prepareLabGuest(guestChoiceOf(m, k), { log: say })
    return { run, machine: { where: 'guest', guest } }
  } catch (err) {
    if (!(err instanceof UserError)) throw err
    const short = new Error(`oomlab: ${err.message}`)
    short.stack = short.message
    throw short
  }
}

async function provided(): Promise<{ machine: MachineChoice; run: WorkerRun }> {
  const machine = inject('oomlabMachine')
  const run = inject('oomlabRun')
  if (machine !== undefined && run !== undefined) return { machine, run }
  return (here ??= resolveHere())
}

export async function workerRun(): Promise<WorkerRun> {
  return (await provided()).run
}

export async function openMachine(req: MachineRequest): Promise<Os> {
  const { machine } = await provided()
  // A worker loads one machine's side only: this host's (processes, cgroupfs, /dev/kmsg) or a guest's (QEMU, the channel).
  if (machine.where === 'local') return new (await import('../os/local.js')).LocalOs()
  const { openGuestOs } = await import('../vm/restore.js')
  return openGuestOs(machine.guest, { log: (line) => say(`${req.label}: ${line}`), ...(req.signal && { signal: req.signal }) })
}

/** Natively, the cgroup the run's trees go under (none: the cgroup2 mount's root). */
export async function nativeCgroupRoot(): Promise<string | undefined> {
  const { machine } = await provided()
  return machine.where === 'local' ? machine.cgroupRoot : undefined
}
