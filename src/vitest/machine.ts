/**
 * The worker's side: the machine an experiment acts on and where its evidence goes, as oomlab
 * (src/vitest/start.ts) or, under plain vitest, the global setup (src/vitest/global-setup.ts) provided
 * them: this host's kernel, or a guest restored pristine from a snapshot for every experiment.
 */
import { inject } from 'vitest'
import type { Os } from '../os/os.js'
import { UserError } from '../util/errors.js'
import type { MachineChoice, WorkerRun } from './context.js'
import { guestChoiceOf } from '../run/config.js'
import type { PreparedGuest } from '../vm/restore.js'
import type { GuestChoice } from '../vm/prepare.js'

export interface MachineRequest {
  /** The test's name, for messages. */
  label: string
  signal?: AbortSignal
  /** The guest image its spec asks for (`@oomlab-image`); none: the lab's. */
  image?: string
}

const say = (line: string) => process.stderr.write(`oomlab: ${line}\n`)

/** Whether the machine was provided (by oomlab or its global setup), rather than each worker choosing. */
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
    const choice = guestChoiceOf(m, resolved.kernels[0]!)
    const guest = await prepareLabGuest(choice, { log: say })
    return { run, machine: { where: 'guest', guest, choice } }
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
  const log = (line: string) => say(`${req.label}: ${line}`)
  const guest = req.image === undefined ? machine.guest : (machine.images?.[req.image] ?? (await imageGuest(machine.choice, req.image, log)))
  const { openGuestOs } = await import('../vm/restore.js')
  return openGuestOs(guest, { log, ...(req.signal && { signal: req.signal }) })
}

/** Guests of other images this worker prepared itself (plain vitest): once per image (its snapshot is made by one process, the others wait). */
const imageGuests = new Map<string, Promise<PreparedGuest>>()

function imageGuest(choice: GuestChoice, image: string, log: (line: string) => void): Promise<PreparedGuest> {
  let p = imageGuests.get(image)
  if (!p) {
    p = Promise.all([import('../vm/prepare.js'), import('../run/images.js')]).then(([{ prepareLabGuest }, { imageAddition }]) => prepareLabGuest({ ...choice, addition: imageAddition(image) }, { log }))
    imageGuests.set(image, p)
  }
  return p
}

/** Natively, the cgroup the run's trees go under (none: the cgroup2 mount's root). */
export async function nativeCgroupRoot(): Promise<string | undefined> {
  const { machine } = await provided()
  return machine.where === 'local' ? machine.cgroupRoot : undefined
}
