/**
 * Native runs on a systemd host. systemd owns the cgroup tree there and moves or removes cgroups it
 * did not make, so a run asks it for a scope of its own, delegated to it
 * (`systemd-run --scope -p Delegate=yes`), and writes nowhere else. In the scope, the launcher moves
 * itself into a leaf (`harness`) before it starts anything: a cgroup that holds processes cannot hand
 * a controller down, and the run's trees go beside that leaf.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { basename, join } from 'node:path'
import { execa } from 'execa'
import { cgCreate, cgWrite, cgEnableControllers, cgControllers, cgReadProcs } from '../cgroup/cgroupfs.js'
import { parseTreeName, treeName, ownerIsGone, type TreeOwner } from '../proc/owner.js'
import { UserError } from '../util/errors.js'

/** sd_booted(3): systemd is the init system. */
export function isSystemdHost(runDir = '/run/systemd/system'): boolean {
  return existsSync(runDir)
}

/** A process's cgroup v2 path, from /proc/PID/cgroup ("0::/system.slice/x.scope"). */
export function parseProcCgroup(text: string): string | undefined {
  const line = text.split('\n').find((l) => l.startsWith('0::'))
  return line?.slice(3) || undefined
}

export function scopeUnit(owner: TreeOwner): string {
  return `${treeName(owner)}.scope`
}

/** The owner a scope was named after, if it is one of ours. */
export function parseScopeUnit(name: string): TreeOwner | undefined {
  return name.endsWith('.scope') ? parseTreeName(name.slice(0, -'.scope'.length)) : undefined
}

/**
 * The command that runs `command` in a new scope delegated to it. systemd-run execs `command` in its
 * own place, so `setpriv --pdeathsig` ends it with the process that started it.
 */
export function inScopeCommand(unit: string, command: string[]): [string, ...string[]] {
  return ['systemd-run', '--scope', '--quiet', '--collect', '--property=Delegate=yes', `--unit=${unit}`, '--', 'setpriv', '--pdeathsig', 'TERM', '--', ...command]
}

/**
 * In the scope, first thing: checks this process is in a scope of ours, moves the scope's processes
 * into `<scope>/harness`, hands memory down, and returns the scope's directory for the run's trees.
 */
export async function enterScope(mountPoint: string, procCgroup = readFileSync('/proc/self/cgroup', 'utf8'), pid = process.pid): Promise<string> {
  const path = parseProcCgroup(procCgroup)
  if (!path || !parseScopeUnit(basename(path)))
    throw new UserError(`expected to run in a scope started by oomlab (systemd-run --scope), but this process is in cgroup ${path ?? '(none on cgroup v2)'}`)
  const scope = join(mountPoint, path)
  if (!(await cgControllers(scope)).includes('memory'))
    throw new UserError(`systemd did not delegate the memory controller to ${scope}: enable memory accounting (DefaultMemoryAccounting=yes), or name a cgroup with --cgroup-root`)
  const harness = join(scope, 'harness')
  await cgCreate(harness)
  // Everything in a scope named after this run is this run's (systemd-run itself may wait there).
  const procs = new Set([pid, ...(await cgReadProcs(scope))])
  for (const p of procs) await cgWrite(harness, 'cgroup.procs', String(p))
  await cgEnableControllers(scope, ['memory'])
  return scope
}

/** Scopes in `sliceDir` left by dead runs: ours by name, in our PID namespace, with their owner gone. */
export function staleScopes(sliceDir: string, pidns: number): string[] {
  return readdirSync(sliceDir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .filter((name) => {
      const owner = parseScopeUnit(name)
      return owner !== undefined && owner.pidns === pidns && ownerIsGone(owner)
    })
}

/**
 * Stops the scopes of runs killed too hard to clean up (every process of the run got SIGKILL, the
 * workload lived on). `systemctl stop` kills what is left in them and removes their cgroups,
 * systemd's way.
 */
export async function reapStaleScopes(sliceDir: string, pidns: number, say: (line: string) => void): Promise<string[]> {
  const stale = staleScopes(sliceDir, pidns)
  for (const unit of stale) {
    const r = await execa('systemctl', ['stop', '--', unit], { reject: false, timeout: 30_000 })
    say(r.exitCode === 0 ? `stopped stale scope ${unit} left by an interrupted run` : `could not stop stale scope ${unit}: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`)
  }
  return stale
}
