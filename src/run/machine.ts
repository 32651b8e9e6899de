/**
 * Where the experiments run, decided once per run: natively when this host passes every preflight check and
 * no guest was asked for, else in guests restored from a snapshot. The CLI, vitest's config under plain
 * `vitest`, and nothing else call this.
 */
import { preflight, formatCheck } from '../host/preflight.js'
import { isSystemdHost, scopeUnit } from '../host/scope.js'
import { selfOwner } from '../proc/owner.js'
import { UserError } from '../util/errors.js'
import type { GuestMachine, Machine } from './config.js'

export interface MachineWish {
  /** Guests, whatever the host can do (--vm, OOMLAB_VM=1, a kernel named). */
  vm: boolean
  /** This host or nothing (--native, --cgroup-root). */
  native: boolean
  /** A delegated cgroup of the user's for the run's trees (--cgroup-root, OOMLAB_CGROUP_PARENT). */
  cgroupRoot?: string
  guest: Omit<GuestMachine, 'kind'>
  /** Whether the caller can start a systemd scope for the run (the CLI can; vitest, already running, cannot). */
  canStartScope: boolean
}

export async function decideMachine(wish: MachineWish, log: (line: string) => void): Promise<Machine> {
  const guest: GuestMachine = { kind: 'guest', ...wish.guest }
  if (wish.vm) return guest
  const failing = (await preflight(undefined, wish.cgroupRoot, { firstFailure: true })).filter((c) => !c.ok)
  if (failing.length === 0) {
    if (wish.cgroupRoot !== undefined || !isSystemdHost()) return { kind: 'native', ...(wish.cgroupRoot !== undefined && { cgroupRoot: wish.cgroupRoot }) }
    // On a systemd host the run writes only in a scope of its own that systemd delegates to it.
    if (wish.canStartScope) return { kind: 'native', scope: scopeUnit(selfOwner()) }
    throw new UserError('natively on a systemd host the experiments need a delegated cgroup: run them with `oomlab reproduce` (it starts a delegated scope), or set OOMLAB_CGROUP_PARENT to a cgroup delegated to you')
  }
  if (wish.native) throw new UserError(`cannot run natively: ${formatCheck(failing[0]!).replace(/^FAIL\s+/, '')}`)
  log(`running in guests, as this host cannot: ${failing[0]!.detail}`)
  return guest
}
