/**
 * The QEMU process behind a guest, as the guest's lifecycle (src/vm/vm.ts) sees it: its pid, its exit,
 * a way to kill it, and its output a line at a time.
 */
import { spawn } from 'node:child_process'
import { lineSplitter } from './console.js'
import { which } from '../../util/which.js'

/**
 * The QEMU process behind a guest: spawned by this process, or restored ahead by another and claimed
 * by this one (src/vm/ahead.ts). Its output comes a line at a time to the sinks given when it starts.
 */
export interface QemuProcess {
  readonly pid: number | undefined
  /** QEMU's exit code or signal, once it is gone (and its last lines delivered). */
  readonly exited: Promise<number | string | undefined>
  /** SIGKILL, or for a guest restored ahead, asks its holder to. */
  kill(): void
}

export interface QemuSinks {
  out: (line: string) => void
  err: (line: string) => void
}

/**
 * QEMU as a child of this process; it dies with this process (pdeathsig) even when that is SIGKILLed.
 * It runs in a session of its own: with the kernel's autogroups (sched_autogroup_enabled) a session is
 * what the scheduler shares the CPU between, so a guest gets its share whichever process started it.
 * (Guests restored ahead by the CLI, in the CLI's session while vitest has its own, ran the experiments
 * whose workload keeps going, 01 and 11 together on sid, 3-8 times slower than in the workers' session.)
 */
export function spawnQemu(setpriv: string, qemu: string, args: string[], sinks: QemuSinks, fd3?: number): QemuProcess {
  // setsid execs QEMU in place (it is no group leader here), so the pid and the pdeathsig stay QEMU's.
  const child = spawn(setpriv, ['--pdeathsig', 'KILL', '--', setsidPath(), qemu, ...args], {
    // stdin never written: a pipe keeps QEMU from putting a terminal into raw mode
    stdio: fd3 === undefined ? ['pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe', fd3],
  })
  const out = lineSplitter(sinks.out)
  const err = lineSplitter(sinks.err)
  child.stdout!.on('data', out.push)
  child.stderr!.on('data', err.push)
  return {
    pid: child.pid,
    // 'close': the process is gone and its last lines are read. A spawn that failed says why.
    exited: new Promise((resolve) => {
      child.once('error', (e) => resolve(e.message))
      child.once('close', (code, signal) => {
        out.flush()
        err.flush()
        resolve(code ?? signal ?? undefined)
      })
    }),
    kill: () => void child.kill('SIGKILL'),
  }
}

let setsidFound: string | undefined
export function setsidPath(): string {
  setsidFound ??= which('setsid')
  if (!setsidFound) throw new Error('setsid (util-linux) is missing: QEMU runs in a session of its own; install util-linux')
  return setsidFound
}
