/**
 * vitest's global setup for the experiments: decides where they run, once per run. Natively when this
 * host passes every preflight check (or OOMLAB_MACHINE=local); otherwise in guests: the kernel is
 * fetched, the guest image built and a booted guest snapshotted here, and each experiment then gets
 * a guest restored from that snapshot. The choice of kernel comes from the environment (the CLI sets it):
 * OOMLAB_KERNEL (suite or version), OOMLAB_KERNEL_IMAGE, OOMLAB_ACCEL, OOMLAB_MEMORY, OOMLAB_APPEND.
 */
import { readFileSync } from 'node:fs'
import type { TestProject } from 'vitest/node'
import { preflight, formatCheck } from '../host/preflight.js'
import { isSystemdHost } from '../host/scope.js'
import { prepareLabGuest, type GuestChoice } from '../vm/prepare.js'
import type { PreparedGuest } from '../vm/restore.js'
import { UserError } from '../util/errors.js'
import type { MachineChoice } from './machine.js'
import { StatusLine } from '../util/progress.js'

const status = new StatusLine(process.stderr)
const say = status.log

/**
 * A run the CLI prepared already names a JSON file here, with a prepared guest for each kernel name
 * ("default" for a run on one kernel), so none is prepared twice.
 */
export const PREPARED_ENV = 'OOMLAB_PREPARED_FILE'

export function preparedKey(env: NodeJS.ProcessEnv): string {
  return env.OOMLAB_KERNEL_NAME ?? 'default'
}

export function guestChoiceFromEnv(env: NodeJS.ProcessEnv = process.env): GuestChoice {
  const memory = env.OOMLAB_MEMORY ? Number(env.OOMLAB_MEMORY) : undefined
  if (memory !== undefined && !(Number.isInteger(memory) && memory >= 512)) throw new UserError(`OOMLAB_MEMORY=${JSON.stringify(env.OOMLAB_MEMORY)}: expected MiB, 512 or more`)
  const accel = env.OOMLAB_ACCEL ?? 'auto'
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') throw new UserError(`OOMLAB_ACCEL=${JSON.stringify(accel)}: expected auto, kvm or tcg`)
  return {
    ...(env.OOMLAB_KERNEL && { kernel: env.OOMLAB_KERNEL }),
    ...(env.OOMLAB_KERNEL_IMAGE && { kernelImage: env.OOMLAB_KERNEL_IMAGE }),
    accel,
    ...(memory !== undefined && { memoryMiB: memory }),
    append: (env.OOMLAB_APPEND ?? '').split(/\s+/).filter(Boolean),
  }
}

export async function chooseMachine(env: NodeJS.ProcessEnv = process.env): Promise<MachineChoice> {
  if (env[PREPARED_ENV]) {
    const prepared = JSON.parse(readFileSync(env[PREPARED_ENV], 'utf8')) as Record<string, PreparedGuest>
    const guest = prepared[preparedKey(env)]
    if (!guest) throw new Error(`${env[PREPARED_ENV]} has no guest for kernel ${preparedKey(env)}`)
    return { where: 'guest', guest }
  }
  const want = env.OOMLAB_MACHINE ?? 'auto'
  if (want !== 'auto' && want !== 'local' && want !== 'guest') throw new UserError(`OOMLAB_MACHINE=${JSON.stringify(want)}: expected auto, local or guest`)
  if (want !== 'guest') {
    const failing = (await preflight(undefined, env.OOMLAB_CGROUP_PARENT || undefined)).filter((c) => !c.ok)
    if (failing.length === 0) {
      if (isSystemdHost() && !env.OOMLAB_CGROUP_PARENT)
        throw new UserError('natively on a systemd host the experiments need a delegated cgroup: run them with `oomlab reproduce` (it starts a delegated scope), or set OOMLAB_CGROUP_PARENT to a cgroup delegated to you')
      return { where: 'local' }
    }
    if (want === 'local') throw new UserError(`cannot run natively: ${formatCheck(failing[0]!).replace(/^FAIL\s+/, '')}`)
    say(`running in guests, as this host cannot: ${failing[0]!.detail}`)
  }
  const guest = await prepareLabGuest(guestChoiceFromEnv(env), { log: say, progress: status.progress })
  status.end()
  return { where: 'guest', guest }
}

export default async function setup(project: TestProject): Promise<void> {
  try {
    // A matrix's projects each name their kernel in their own environment.
    project.provide('oomlabMachine', await chooseMachine({ ...process.env, ...project.config.env }))
  } catch (err) {
    // One line, not vitest's stack trace of the setup file.
    if (err instanceof UserError) {
      say(err.message)
      const short = new Error(err.message)
      short.stack = `Error: ${err.message}`
      throw short
    }
    throw err
  }
}
