/**
 * Starting workload processes the way the article does: each joins its cgroup before its program
 * runs (so every page it touches is charged there), then drops to an unprivileged user.
 * The join is a fixed shell step; the program and its arguments travel as an argument array.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { readStat, type ProcIdentity } from './procfs.js'
import { which } from '../util/which.js'
import { UserError } from '../util/errors.js'

/** "$1" is the cgroup.procs file; the rest is the command. Exit 97 means the join failed. */
const JOIN_THEN_EXEC = 'echo $$ > "$1" || exit 97; shift; echo oomlab-joined; exec "$@"'
const JOINED = 'oomlab-joined\n'

export interface Credentials {
  uid: number
  gid: number
}

export interface StartOptions {
  /** Absolute directory of the cgroup to join. */
  cgroup: string
  user: Credentials
  cwd: string
  /** A pipe for stdin (the shell we type into); otherwise /dev/null. */
  stdin?: 'pipe' | 'ignore'
}

export class SpawnError extends Error {
  override readonly name = 'SpawnError'
}

const OUTPUT_CAP = 64 * 1024

/** A process started in a cgroup; collects what it prints so tests can wait on it. */
export class Workload {
  private out = ''
  /** Characters dropped from the front of `out` to keep it bounded (stress-ng -v in a restart loop). */
  private dropped = 0
  private readonly waiters = new Set<() => void>()
  /** The process has exited (its pipes may still be held open by its children). */
  exited = false
  /** The signal that ended it, once exited by one. */
  signal: NodeJS.Signals | null = null
  /** Resolves when the process exits, however it exits. */
  readonly exit: Promise<void>

  constructor(
    readonly argv: readonly string[],
    readonly subprocess: ChildProcess,
  ) {
    for (const s of [subprocess.stdout!, subprocess.stderr!]) {
      s.setEncoding('utf8')
      s.on('data', (chunk: string) => {
        this.out += chunk
        if (this.out.length > 2 * OUTPUT_CAP) {
          this.dropped += this.out.length - OUTPUT_CAP
          this.out = this.out.slice(-OUTPUT_CAP)
        }
        this.notify()
      })
    }
    // 'exit', not 'close': that waits for the pipes too, which stress-ng may still hold.
    this.exit = new Promise((resolve) =>
      subprocess.once('exit', (_code, signal) => {
        this.exited = true
        this.signal = signal
        this.notify()
        resolve()
      }),
    )
    // A pipe's end closed under us (the process died): its exit says so.
    subprocess.stdin?.on('error', () => undefined)
  }

  /** A mark in the output: waitForOutput(re, ..., mark) looks only at what came after it. */
  get mark(): number {
    return this.dropped + this.out.length
  }

  get pid(): number {
    return this.subprocess.pid!
  }

  /** Everything printed so far, after the join marker. */
  get output(): string {
    const i = this.out.indexOf(JOINED)
    return i < 0 ? this.out : this.out.slice(i + JOINED.length)
  }

  private notify() {
    for (const w of this.waiters) w()
  }

  /** Resolves with the first match of `re` in what the process printed after `since` (a mark). */
  waitForOutput(re: RegExp, expected: string, timeoutMs: number, since = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.out.slice(Math.max(0, since - this.dropped)).match(re)
        if (m) return finish(() => resolve(m))
        if (this.exited)
          finish(() => reject(new SpawnError(`${this.argv.join(' ')} exited while waiting for ${expected}; it printed: ${JSON.stringify(this.out.slice(-400))}`)))
      }
      const finish = (fn: () => void) => {
        clearTimeout(timer)
        this.waiters.delete(check)
        fn()
      }
      const timer = setTimeout(
        () => finish(() => reject(new SpawnError(`timed out after ${timeoutMs} ms waiting for ${expected}; ${this.argv[0]} printed: ${JSON.stringify(this.out.slice(-400))}`))),
        timeoutMs,
      )
      this.waiters.add(check)
      check()
    })
  }

  /** Types a line into the process's stdin. */
  type(line: string): void {
    this.subprocess.stdin!.write(`${line}\n`)
  }
}

let setprivFound: string | undefined
export function setprivPath(): string {
  setprivFound ??= which('setpriv')
  if (!setprivFound) throw new SpawnError("setpriv (util-linux) is missing: it starts the workload as an unprivileged user; install util-linux")
  return setprivFound
}

/** Starts `argv` inside `cgroup` as `user`; resolves once the process is in the cgroup. */
export async function startInCgroup(argv: readonly string[], opts: StartOptions, timeoutMs = 10_000): Promise<{ id: ProcIdentity; workload: Workload }> {
  const { uid, gid } = opts.user
  // An absolute path: busybox's sh runs its own applet for a bare "setpriv".
  const setpriv = [setprivPath(), `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--']
  // node's own spawn, not execa: in a guest under emulation every line of JavaScript per spawn counts.
  // What is started dies with its cgroup when the tree is torn down (on exit and signals too).
  const subprocess = spawn('/bin/sh', ['-c', JOIN_THEN_EXEC, 'oomlab-join', join(opts.cgroup, 'cgroup.procs'), ...setpriv, ...argv], {
    cwd: opts.cwd,
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: opts.cwd, LANG: 'C' },
  })
  if (subprocess.pid === undefined) {
    const [err] = (await once(subprocess, 'error')) as [Error]
    throw new SpawnError(`could not start /bin/sh to run ${argv.join(' ')}: ${err.message}`)
  }
  const workload = new Workload(argv, subprocess)
  try {
    await workload.waitForOutput(/oomlab-joined\n/, `${argv.join(' ')} to join ${opts.cgroup}`, timeoutMs)
  } catch (err) {
    subprocess.kill('SIGKILL')
    throw err
  }
  const stat = readStat(workload.pid)
  if (!stat) throw new SpawnError(`${argv.join(' ')} (pid ${workload.pid}) vanished right after joining ${opts.cgroup}`)
  return { id: { pid: workload.pid, startTime: stat.startTime }, workload }
}

/** The unprivileged user the workload runs as (the article's uid 1000). */
export function workloadUser(env: NodeJS.ProcessEnv = process.env): Credentials {
  const uid = Number(env.OOMLAB_UID ?? 1000)
  const gid = Number(env.OOMLAB_GID ?? uid)
  if (!Number.isInteger(uid) || uid <= 0 || !Number.isInteger(gid) || gid < 0)
    throw new UserError(`OOMLAB_UID/OOMLAB_GID must name an unprivileged user (got ${env.OOMLAB_UID}/${env.OOMLAB_GID})`)
  return { uid, gid }
}
