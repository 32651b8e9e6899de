/**
 * A child process a test starts and watches: its output a line at a time, a wait for a line, its exit,
 * signals. Node's own spawn only (no execa, no tsx): the soak's runner guest carries these helpers too.
 */
import { spawn } from 'node:child_process'

export interface ChildExit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Child {
  pid: number
  /** stdout's whole lines so far. */
  lines: string[]
  /** stdout and stderr as they came. */
  output(): string
  stderr(): string
  /** Resolves with the first line of stdout that matches `re`, printed or still to come; fails if the child ends first. */
  line(re: RegExp): Promise<string>
  /** The process ended (its output may still be coming: a process it started can hold its pipes). */
  exit: Promise<ChildExit>
  /** The process ended and all of its output was read. */
  closed: Promise<ChildExit>
  kill(sig: NodeJS.Signals): void
}

/**
 * `stdin: 'pipe'` keeps the child's stdin open (never written); `detached` makes it lead a process group (and
 * session) of its own.
 */
export function startChild(file: string, args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: 'ignore' | 'pipe'; detached?: boolean } = {}): Child {
  const p = spawn(file, args, { stdio: [o.stdin ?? 'ignore', 'pipe', 'pipe'], detached: o.detached === true, ...(o.cwd !== undefined && { cwd: o.cwd }), ...(o.env !== undefined && { env: o.env }) })
  const lines: string[] = []
  const all: string[] = []
  const err: string[] = []
  const waiters = new Set<() => void>()
  let partial = ''
  p.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    all.push(chunk)
    const parts = (partial + chunk).split('\n')
    partial = parts.pop() ?? ''
    lines.push(...parts)
    for (const w of [...waiters]) w()
  })
  p.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    all.push(chunk)
    err.push(chunk)
  })
  const exit = new Promise<ChildExit>((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })))
  const closed = new Promise<ChildExit>((resolve) => p.on('close', (code, signal) => resolve({ code, signal })))
  return {
    pid: p.pid!,
    lines,
    output: () => all.join(''),
    stderr: () => err.join(''),
    exit,
    closed,
    kill: (sig) => void p.kill(sig),
    line: (re) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const l = lines.find((x) => re.test(x))
          if (l === undefined) return
          waiters.delete(check)
          resolve(l)
        }
        waiters.add(check)
        check()
        void closed.then(() => {
          if (!waiters.delete(check)) return
          reject(new Error(`the child ended without printing ${re}; it said: ${all.join('').slice(-800)}`))
        })
      }),
  }
}
