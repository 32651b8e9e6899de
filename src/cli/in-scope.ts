/**
 * `oomlab __in-scope -- COMMAND...`: what runs first in the delegated scope of a native run on a
 * systemd host (see host/scope.ts). Moves itself into the scope's leaf, stops scopes of dead runs
 * beside it, then runs COMMAND with the scope as the cgroup root of the run's trees.
 */
import { dirname } from 'node:path'
import { execa } from 'execa'
import { cgMount } from '../cgroup/cgroupfs.js'
import { enterScope, reapStaleScopes } from '../host/scope.js'
import { selfOwner } from '../proc/owner.js'
import { UserError } from '../util/errors.js'
import { log } from './experiments.js'

export async function inScope(argv: string[], signal: AbortSignal): Promise<number> {
  const command = argv[0] === '--' ? argv.slice(1) : argv
  if (command.length === 0) throw new UserError('__in-scope: no command given (it is started by oomlab itself)')
  const mount = cgMount()
  if (!mount) throw new UserError('__in-scope: no cgroup2 filesystem is mounted')
  const scope = await enterScope(mount.mountPoint)
  log(`in the delegated scope ${scope}`)
  await reapStaleScopes(dirname(scope), selfOwner().pidns, log)
  const r = await execa(command[0]!, command.slice(1), {
    stdio: 'inherit',
    reject: false,
    env: { OOMLAB_CGROUP_PARENT: scope },
    cancelSignal: signal,
    forceKillAfterDelay: 5000,
  })
  return r.exitCode ?? (signal.aborted ? 130 : 1)
}
