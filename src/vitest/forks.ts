/**
 * vitest's forks, started ahead. A fork spends its first few hundred milliseconds loading vitest's worker
 * before it can take a spec; the CLI spends as long loading vitest itself and preparing guests before
 * vitest would start one. So the CLI starts the forks first, and vitest's pool (vitest's `PoolWorker`
 * interface, experimental in vitest 4) takes one of them in place of a fork of its own, when it was
 * started exactly as vitest would start it (entry, environment, node options); else it forks as usual.
 * Forks no experiment took are stopped with the run.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { isatty } from 'node:tty'
import type { PoolOptions, PoolWorker, WorkerRequest } from 'vitest/node'
import { vitestRoot } from '../util/paths.js'

/** The custom pool's name: vitest's own names ('forks') cannot be given to a pool of one's own. */
export const POOL_NAME = 'oomlab-forks'

type Env = Partial<NodeJS.ProcessEnv>

/** A pool of one's own, as vitest's `pool` option takes it. */
export interface ForksPool {
  name: string
  createPoolWorker: (o: PoolOptions) => PoolWorker
}

/** How a fork is started: vitest's worker entry, its environment and node options. */
interface Spawn {
  entrypoint: string
  env: Env
  execArgv: string[]
}

/** Forks started ahead of a run's vitest, until its pool takes them or the run ends. */
export class ForksAhead implements Disposable {
  private readonly waiting: ChildProcess[] = []
  private readonly all: ChildProcess[] = []
  /** How many the pool took, and how many it forked itself. */
  taken = 0
  forked = 0

  /** `how`: as all of these were started; none, for a run that starts no fork ahead. */
  private constructor(private readonly how?: Spawn) {}

  /** None: vitest's pool forks each worker itself. */
  static none(): ForksAhead {
    return new ForksAhead()
  }

  /** `count` forks, started as vitest 4 starts its forks for this harness's projects. */
  static start(count: number): ForksAhead {
    const root = vitestRoot()
    const ahead = new ForksAhead({ entrypoint: join(root, 'dist/workers/forks.js'), env: expectedEnv(), execArgv: expectedExecArgv(root) })
    for (let i = 0; i < count; i++) {
      const child = forkWorker(ahead.how!)
      ahead.all.push(child)
      ahead.waiting.push(child)
    }
    return ahead
  }

  /** The forks' PIDs, taken or not. */
  pids(): number[] {
    return this.all.map((c) => c.pid!)
  }

  /** One started as vitest asks (same entry, environment and node options), if one is left and alive. */
  take(want: Spawn): ChildProcess | undefined {
    const h = this.how
    if (!h || h.entrypoint !== want.entrypoint || !sameEnv(h.env, want.env) || h.execArgv.join('\0') !== want.execArgv.join('\0')) return undefined
    const i = this.waiting.findIndex((c) => c.exitCode === null && c.signalCode === null)
    if (i === -1) return undefined
    this.taken++
    return this.waiting.splice(i, 1)[0]
  }

  /** vitest's pool, taking its forks from these. */
  pool(): ForksPool {
    return { name: POOL_NAME, createPoolWorker: (o) => new ForkWorker(o, this) }
  }

  /** Stops the forks no experiment took (they wait for a first message that will not come). */
  [Symbol.dispose](): void {
    for (const c of this.waiting.splice(0)) c.kill('SIGKILL')
  }
}

/**
 * What vitest 4.1 gives each fork: this process's environment with its own variables, then its
 * configuration's `env` (vite's import.meta.env: MODE, BASE_URL, DEV, PROD; vite sets NODE_ENV first).
 * A vitest that gives other ones gets no fork of these: the pool forks anew, and the test of this room fails.
 */
function expectedEnv(): Env {
  const nodeEnv = process.env.NODE_ENV || 'development'
  const production = isProduction()
  return { ...process.env, TEST: 'true', VITEST: 'true', NODE_ENV: nodeEnv, VITEST_MODE: 'RUN', FORCE_TTY: isatty(1) ? 'true' : '', BASE_URL: '/', MODE: 'test', DEV: production ? '' : '1', PROD: production ? '1' : '' }
}

/** vitest's node options for a fork: its warning filter and vite's resolve conditions for SSR. */
function expectedExecArgv(vitestRoot: string): string[] {
  return ['--experimental-import-meta-resolve', '--require', join(vitestRoot, 'suppress-warnings.cjs'), '--conditions', 'node', '--conditions', isProduction() ? 'production' : 'development']
}

/** vite's mode for this process: production only when NODE_ENV says so. */
const isProduction = () => process.env.NODE_ENV === 'production'

function sameEnv(a: Env, b: Env): boolean {
  const keys = (e: Env) => Object.keys(e).filter((k) => e[k] !== undefined).sort()
  const ka = keys(a)
  const kb = keys(b)
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k])
}

function forkWorker(how: Spawn): ChildProcess {
  return fork(how.entrypoint, [], { env: how.env, execArgv: how.execArgv, stdio: 'pipe', serialization: 'advanced' })
}

/** vitest's ForksPoolWorker, its fork taken from those started ahead where one fits. */
class ForkWorker implements PoolWorker {
  readonly name = POOL_NAME
  readonly cacheFs = true
  private readonly entrypoint: string
  private readonly stdout: NodeJS.WriteStream
  private readonly stderr: NodeJS.WriteStream
  private child: ChildProcess | undefined

  constructor(
    private readonly options: PoolOptions,
    private readonly ahead: ForksAhead,
  ) {
    this.entrypoint = join(options.distPath, 'workers/forks.js')
    this.stdout = options.project.vitest.logger.outputStream as NodeJS.WriteStream
    this.stderr = options.project.vitest.logger.errorStream as NodeJS.WriteStream
  }

  private get fork(): ChildProcess {
    if (!this.child) throw new Error('vitest asked a fork that was stopped or never started')
    return this.child
  }

  on(event: string, callback: (arg: unknown) => void): void {
    this.fork.on(event, callback)
  }

  off(event: string, callback: (arg: unknown) => void): void {
    this.fork.off(event, callback)
  }

  send(message: WorkerRequest): void {
    this.fork.send(message)
  }

  async start(): Promise<void> {
    if (!this.child) {
      const want = { entrypoint: this.entrypoint, env: this.options.env, execArgv: this.options.execArgv }
      this.child = this.ahead.take(want)
      if (!this.child) {
        this.ahead.forked++
        this.child = forkWorker(want)
      }
    }
    // As vitest's own: the fork's output goes to vitest's streams, which stay open after it.
    for (const [from, to] of [[this.child.stdout, this.stdout], [this.child.stderr, this.stderr]] as const) {
      if (!from) continue
      to.setMaxListeners(to.getMaxListeners() + 1)
      from.pipe(to, { end: false })
    }
  }

  /** SIGTERM (the fork tears its trees or guests down), SIGKILL after half a second, as vitest's own does. */
  async stop(): Promise<void> {
    const child = this.fork
    const exited = new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())))
    const kill = setTimeout(() => child.kill('SIGKILL'), 500)
    child.kill()
    await exited
    clearTimeout(kill)
    for (const [from, to] of [[child.stdout, this.stdout], [child.stderr, this.stderr]] as const) {
      if (!from) continue
      from.unpipe(to)
      to.setMaxListeners(to.getMaxListeners() - 1)
    }
    this.child = undefined
  }

  deserialize(data: unknown): unknown {
    return data
  }
}
