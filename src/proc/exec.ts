/**
 * Running a program to its end as the machine's own user (root): a container runtime's commands
 * (`runc state`, `lxc-info`). Its output goes to files, not pipes: a runtime that starts a detached
 * container hands the container its own stdout and stderr, and a pipe held open by the container would
 * never end. The program and its arguments travel as an argument array.
 */
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { KernelTimeoutError } from '../util/errors.js'

export interface ExecSpec {
  argv: string[]
  /** What it reads on stdin (a runtime's resources as JSON); none: /dev/null. */
  input?: string
  /**
   * Its stdout and stderr appended to this file instead of returned: for a command that leaves a detached
   * child holding them (a container's init), whose later output is then there too.
   */
  logFile?: string
  cwd?: string
  /** Added to a minimal environment (PATH, LANG=C). */
  env?: Record<string, string>
  timeoutMs: number
}

export interface ExecResult {
  /** null when a signal ended it. */
  exitCode: number | null
  signal: string | null
  stdout: string
  stderr: string
  ms: number
}

const OUTPUT_CAP = 256 * 1024
/** root's PATH: runtimes live in sbin (runc, init.lxc), which a guest's /init or a user's PATH may lack. */
const ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export async function execProgram(spec: ExecSpec): Promise<ExecResult> {
  const t0 = performance.now()
  const dir = mkdtempSync(join(tmpdir(), 'oomlab-exec-'))
  const fds: number[] = []
  const open = (path: string, flags: string) => {
    const fd = openSync(path, flags)
    fds.push(fd)
    return fd
  }
  try {
    let stdin: number | 'ignore' = 'ignore'
    if (spec.input !== undefined) {
      const inPath = join(dir, 'stdin')
      const w = open(inPath, 'w')
      writeSync(w, spec.input)
      stdin = open(inPath, 'r')
    }
    const out = spec.logFile !== undefined ? open(spec.logFile, 'a') : open(join(dir, 'stdout'), 'w')
    const err = spec.logFile !== undefined ? out : open(join(dir, 'stderr'), 'w')
    const child = spawn(spec.argv[0]!, spec.argv.slice(1), {
      stdio: [stdin, out, err],
      ...(spec.cwd !== undefined && { cwd: spec.cwd }),
      env: { PATH: ROOT_PATH, LANG: 'C', ...spec.env },
    })
    // The child has its own copies: ours would keep nothing open but the files.
    for (const fd of fds.splice(0)) closeSync(fd)
    const ended = await new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new KernelTimeoutError(`${spec.argv.join(' ')} to end`, 'still running', spec.timeoutMs))
      }, spec.timeoutMs)
      child.once('error', (e) => {
        clearTimeout(timer)
        reject(new Error(`could not run ${spec.argv[0]}: ${e.message}`))
      })
      // 'exit', not 'close': a detached child may hold the files open long after.
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        resolve({ code, signal })
      })
    })
    const read = (f: string) => (spec.logFile !== undefined ? '' : readFileSync(join(dir, f), 'utf8').slice(-OUTPUT_CAP))
    return { exitCode: ended.code, signal: ended.signal, stdout: read('stdout'), stderr: read('stderr'), ms: Math.round(performance.now() - t0) }
  } finally {
    for (const fd of fds) closeSync(fd)
    rmSync(dir, { recursive: true, force: true })
  }
}
