/**
 * vitest's global setup for each experiments project: hands its workers the machine the run decided on
 * (this host, or guests of the project's kernel) and where their evidence goes. Under plain `vitest` it
 * also prepares the kernel's guest (fetch, image, snapshot); under oomlab the CLI did before vitest started.
 */
import type { TestProject } from 'vitest/node'
import { UserError } from '../util/errors.js'
import { StatusLine } from '../util/progress.js'
import { guestChoiceOf, kernelOfProject, type RunConfig } from '../run/config.js'
import { evidenceKernelOf } from '../run/report.js'
import { currentRun, type MachineChoice } from './context.js'

const status = new StatusLine(process.stderr)

async function machineOf(run: RunConfig, project: string): Promise<MachineChoice> {
  if (run.machine.kind === 'native') return { where: 'local', ...(run.machine.cgroupRoot !== undefined && { cgroupRoot: run.machine.cgroupRoot }) }
  const kernel = kernelOfProject(run, project)
  if (!kernel) throw new Error(`no kernel of this run is named by the project ${project}`)
  const prepared = run.prepared?.[kernel.name]
  if (prepared) return { where: 'guest', guest: prepared }
  const m = run.machine
  // Plain vitest only: under oomlab the guest came prepared, and the image and snapshot code need not load.
  const { prepareLabGuest } = await import('../vm/prepare.js')
  const guest = await prepareLabGuest(
    guestChoiceOf(m, kernel),
    { log: status.log, progress: status.progress },
  )
  status.end()
  return { where: 'guest', guest }
}

export default async function setup(project: TestProject): Promise<void> {
  try {
    const run = await currentRun()
    const kernel = kernelOfProject(run, project.name)
    const evidenceKernel = evidenceKernelOf(run, kernel)
    project.provide('oomlabRun', { id: run.id, report: run.report, ...(evidenceKernel !== undefined && { evidenceKernel }) })
    project.provide('oomlabMachine', await machineOf(run, project.name))
  } catch (err) {
    // One line, not vitest's stack trace of the setup file.
    if (err instanceof UserError) {
      status.log(err.message)
      const short = new Error(err.message)
      short.stack = `Error: ${err.message}`
      throw short
    }
    throw err
  }
}
