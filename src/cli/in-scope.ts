/**
 * `oomlab __in-scope RUN.json`: what runs in the delegated scope of a native run on a systemd host (see
 * host/scope.ts). Moves itself into the scope's leaf, stops scopes of dead runs beside it, then runs the
 * run's vitest here with the scope as the cgroup root of the run's trees.
 */
import { dirname } from 'node:path'
import { cgMount } from '../cgroup/cgroupfs.js'
import { enterScope, reapStaleScopes } from '../host/scope.js'
import { selfOwner } from '../proc/owner.js'
import { readRunConfig } from '../run/config.js'
import { UserError } from '../util/errors.js'
import { log, runVitestHere } from './experiments.js'
import { ForksAhead } from '../vitest/forks.js'
import { loadVitest } from '../vitest/start.js'

export async function inScope(argv: string[], signal: AbortSignal): Promise<number> {
  const [path, ...extra] = argv
  if (path === undefined || extra.length > 0) throw new UserError('__in-scope: expected the run\'s configuration file (it is started by oomlab itself)')
  const config = readRunConfig(path)
  if (config.machine.kind !== 'native') throw new UserError(`__in-scope: ${path} is not a native run's configuration`)
  const mount = cgMount()
  if (!mount) throw new UserError('__in-scope: no cgroup2 filesystem is mounted')
  const scope = await enterScope(mount.mountPoint)
  log(`in the delegated scope ${scope}`)
  // Natively the experiments run one at a time: one fork, started in the scope while vitest loads.
  void loadVitest()
  using forks = ForksAhead.start(1)
  await reapStaleScopes(dirname(scope), selfOwner().pidns, log)
  const r = await runVitestHere({ ...config, machine: { ...config.machine, cgroupRoot: scope } }, signal, forks)
  return signal.aborted ? 130 : r.exitCode
}
