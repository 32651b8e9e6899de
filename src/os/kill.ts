/**
 * Killing and reaping on the machine itself: a tree's processes killed until the kernel says it is
 * empty, its cgroups removed deepest first, and the leftovers of runs that died too hard to clean up
 * (SIGKILL) found by their owner's name and removed. These loops run where the cgroups are, never
 * across a channel.
 */
import { join } from 'node:path'
import { readdirSync, rmdirSync, rmSync, writeFileSync, readFileSync, existsSync, lstatSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { cgHas, cgWrite, parseKeyed, parsePids } from '../cgroup/cgroupfs.js'
import { waitUntilEmpty } from '../cgroup/wait.js'
import { selfOwner, parseTreeName, ownerIsGone } from '../proc/owner.js'
import { endBySignal } from '../util/signals.js'
import { KernelTimeoutError } from '../util/errors.js'
import { readStat, readWchan } from '../proc/procfs.js'

/**
 * Kills every process in the subtree: cgroup.kill where the kernel has it (5.14+), else SIGKILL each PID
 * until empty. A process SIGKILL cannot end (a kernel thread moved in, a task in uninterruptible sleep)
 * fails it after `timeoutMs`, named with its state.
 */
export async function killTree(dir: string, timeoutMs: number): Promise<void> {
  try {
    if (await cgHas(dir, 'cgroup.kill')) {
      await cgWrite(dir, 'cgroup.kill', '1')
      await waitUntilEmpty(dir, { timeoutMs })
      return
    }
    // Old kernels: a process may fork while we kill, so repeat until the kernel says empty.
    for (let round = 0; ; round++) {
      for (const pid of subtreePids(dir)) signal(pid)
      try {
        await waitUntilEmpty(dir, { timeoutMs: round < 20 ? 500 : timeoutMs })
        return
      } catch (err) {
        if (round >= 20) throw err
      }
    }
  } catch (err) {
    const left = err instanceof KernelTimeoutError ? subtreePids(dir) : []
    if (left.length === 0) throw err
    throw new Error(`${dir} still holds ${left.length === 1 ? 'a process' : `${left.length} processes`} that SIGKILL did not end within ${timeoutMs / 1000} s: ${left.map(describeProcess).join('; ')}`)
  }
}

/** PF_KTHREAD in /proc/PID/stat's flags: kernel threads ignore every signal. */
const PF_KTHREAD = 0x00200000

/** "pid 28 (khungtaskd): a kernel thread", "pid 90 (cat): state D, uninterruptible sleep in fuse_..." */
export function describeProcess(pid: number): string {
  const st = readStat(pid)
  if (!st) return `pid ${pid}: gone meanwhile`
  if (st.flags & PF_KTHREAD) return `pid ${pid} (${st.comm}): a kernel thread, which no signal ends`
  const what = st.state === 'D' ? 'uninterruptible sleep' : st.state === 'Z' ? 'a zombie' : st.state === 'T' || st.state === 't' ? 'stopped' : 'not ended'
  const wchan = readWchan(pid)
  return `pid ${pid} (${st.comm}): state ${st.state}, ${what}${wchan ? ` in ${wchan}` : ''}`
}

function subtreePids(dir: string): number[] {
  const pids: number[] = []
  for (const d of subtreeDirs(dir)) {
    try {
      pids.push(...parsePids(readFileSync(join(d, 'cgroup.procs'), 'utf8')))
    } catch {
      /* removed meanwhile */
    }
  }
  return pids
}

function signal(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    /* already gone */
  }
}

/** The cgroup and every cgroup below it, deepest first. */
export function subtreeDirs(dir: string): string[] {
  const dirs: string[] = []
  const walk = (d: string) => {
    dirs.push(d)
    try {
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name))
    } catch {
      /* removed meanwhile */
    }
  }
  walk(dir)
  return dirs.reverse()
}

/**
 * Synchronous last-resort teardown for signals and exit, when no event loop is left to wait with:
 * kill, spin on cgroup.events (bounded), remove deepest first.
 */
export function killAndRemoveSync(dir: string): void {
  if (!existsSync(dir)) return
  const populated = () => {
    try {
      return parseKeyed(readFileSync(join(dir, 'cgroup.events'), 'utf8')).get('populated') === 1
    } catch {
      return false
    }
  }
  const deadline = Date.now() + 3000
  try {
    writeFileSync(join(dir, 'cgroup.kill'), '1')
  } catch {
    /* older kernel: signal each PID below */
  }
  while (populated() && Date.now() < deadline) for (const pid of subtreePids(dir)) signal(pid)
  for (const d of subtreeDirs(dir)) {
    try {
      rmdirSync(d)
    } catch {
      /* reported by the caller's next run as stale */
    }
  }
}

/**
 * Removes trees left by runs that died too hard to clean up: only trees named by this harness, owned
 * in our PID namespace by a process that is gone. A live owner's trees (another run, or another
 * worker thread of this one) are left to it.
 */
export function reapStaleTrees(parent: string, say: (line: string) => void = (l) => process.stderr.write(`oomlab: ${l}\n`)): string[] {
  const reaped: string[] = []
  const ourNs = selfOwner().pidns
  for (const e of readdirSync(parent, { withFileTypes: true })) {
    const owner = e.isDirectory() ? parseTreeName(e.name) : undefined
    if (!owner || owner.pidns !== ourNs) continue
    if (!ownerIsGone(owner)) continue
    killAndRemoveSync(join(parent, e.name))
    reaped.push(e.name)
    say(`removed stale cgroup tree ${join(parent, e.name)} left by an interrupted run`)
  }
  reapStaleWorkdirs(ourNs, say)
  return reaped
}

/** A run's temp dir: named after its tree, so the reaper finds both. */
export const WORKDIR_PREFIX = 'oomlab-work-'

/** The temp dirs of dead runs, by the same rule as their trees. */
function reapStaleWorkdirs(ourNs: number | undefined, say: (line: string) => void): void {
  const tmp = tmpdir()
  for (const f of readdirSync(tmp)) {
    // tmp names it <prefix>-<pid>-<random>
    const owner = f.startsWith(WORKDIR_PREFIX) ? parseTreeName(f.slice(WORKDIR_PREFIX.length).replace(/-\d+-\w+$/, '')) : undefined
    if (!owner || owner.pidns !== ourNs || !ownerIsGone(owner)) continue
    // Only a real directory of root's: /tmp is everyone's, and a name is easy to fake.
    const st = lstatSync(join(tmp, f), { throwIfNoEntry: false })
    if (!st?.isDirectory() || st.uid !== 0) continue
    rmSync(join(tmp, f), { recursive: true, force: true })
    removeBeside(join(tmp, f))
    say(`removed stale temp dir ${join(tmp, f)} left by an interrupted run`)
  }
}

/**
 * Folders other programs make named after a path in a run's temp dir: LXC's lock folder of an lxcpath
 * there (/run/lxc/lock/<lxcpath>), which outlives a container. They go with the temp dir.
 */
const BESIDE_WORKDIR = ['/run/lxc/lock']

function removeBeside(workdir: string): void {
  for (const base of BESIDE_WORKDIR) {
    const dir = join(base, workdir)
    const st = lstatSync(dir, { throwIfNoEntry: false })
    if (st?.isDirectory() && st.uid === 0) rmSync(dir, { recursive: true, force: true })
  }
}

/** Trees and folders open on this machine, for the synchronous teardown on a signal or exit. */
const open = new Map<string, string>()

export function trackTree(dir: string, workdir: string): void {
  open.set(dir, workdir)
}

export function untrackTree(dir: string): void {
  open.delete(dir)
}

function teardownAllSync(): void {
  for (const [dir, workdir] of open) {
    killAndRemoveSync(dir)
    rmSync(workdir, { recursive: true, force: true })
    removeBeside(workdir)
  }
  open.clear()
}

let handlersInstalled = false
/** Ctrl-C, SIGTERM and exit tear down whatever trees are open on this machine. */
export function installTeardownHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', teardownAllSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(sig, () => {
      teardownAllSync()
      endBySignal(sig)
    })
}
