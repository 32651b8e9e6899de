/**
 * vitest's global setup for each experiments project under plain `vitest`: hands its workers the machine
 * the run decided on (this host, or guests of the project's kernel) and where their evidence goes, and
 * prepares the kernel's guest (fetch, image, snapshot). oomlab hands its vitest the same itself
 * (src/vitest/start.ts), its guests prepared before vitest started.
 */
import type { TestProject } from 'vitest/node'
import { UserError } from '../util/errors.js'
import { StatusLine } from '../util/progress.js'
import { guestChoiceOf, kernelOfProject, type RunConfig } from '../run/config.js'
import { currentRun, provisionsOf, type MachineChoice } from './context.js'

const status = new StatusLine(process.stderr)

async function prepareGuest(run: RunConfig, project: string): Promise<MachineChoice> {
  const kernel = kernelOfProject(run, project)
  if (run.machine.kind !== 'guest' || !kernel) throw new Error(`no kernel of this run is named by the project ${project}`)
  const choice = guestChoiceOf(run.machine, kernel)
  const { prepareLabGuest } = await import('../vm/prepare.js')
  const guest = await prepareLabGuest(choice, { log: status.log, progress: status.progress })
  status.end()
  return { where: 'guest', guest, choice }
}

export default async function setup(project: TestProject): Promise<void> {
  try {
    const run = await currentRun()
    const given = provisionsOf(run, project.name)
    project.provide('oomlabRun', given.run)
    project.provide('oomlabMachine', given.machine ?? (await prepareGuest(run, project.name)))
  } catch (err) {
    // One line, not vitest's stack trace of the setup file. By name: the configuration file's copy of the class may have made it.
    if ((err as Error).name === 'UserError') {
      const { message } = err as UserError
      status.log(message)
      const short = new Error(message)
      short.stack = `Error: ${message}`
      throw short
    }
    throw err
  }
}
