/**
 * vitest started in this process through its Node API (`createVitest`), with the run's configuration handed
 * over in memory: no second node process to start, no configuration file to read back. Its forks are this
 * process's children, in its process group; an interrupt stops them as a signal to a group of their own
 * would (src/proc/group.ts): each gets SIGTERM and tears its trees or guests down, and what is left after
 * the grace is killed and seen dead before the caller reaps.
 */
import type { Reporter, Vitest } from 'vitest/node'
import type { RunConfig } from '../run/config.js'
import { projectRoot } from '../util/paths.js'
import { descendantsEnded, groupDescendants, signalAll } from '../proc/group.js'
import { isExperimentsProject } from '../report/paths.js'
import { provideRun, provisionsOf } from './context.js'
import { ForksAhead } from './forks.js'

export interface VitestExit {
  exitCode: number
  timedOut: boolean
}

export interface StartOptions {
  /** Projects to run (vitest's `--project`). */
  project: string
  reporters: (string | Reporter)[]
  /** vitest's JSON reporter's file. */
  outputJson?: string
  signal: AbortSignal
  /** Deadline for the whole run, if any. */
  timeoutMs?: number
  /** How long interrupted forks have to tear down before they are killed. */
  graceMs: number
  /** Forks started ahead, for vitest's pool to take. */
  forks?: ForksAhead
}

let loading: Promise<typeof import('vitest/node')> | undefined

/**
 * vitest's Node API, loaded once. A run starts loading it before it prepares its guests: much of loading is
 * reading files, and preparing is too.
 */
export function loadVitest(): Promise<typeof import('vitest/node')> {
  loading ??= import('vitest/node')
  // Said where it is used, not as an unhandled rejection of the early start.
  loading.catch(() => undefined)
  return loading
}

/** Runs the run's experiments in this process; resolves once vitest is closed and, if stopped, its forks are dead. */
export async function startVitestHere(run: RunConfig, o: StartOptions): Promise<VitestExit> {
  const stopped = new AbortController()
  provideRun(run, stopped.signal)
  const { createVitest } = await loadVitest()
  // Evaluated here, not with every command: its timeouts read OOMLAB_TIMEOUT_SCALE, which the CLI checks first.
  const { configOf } = await import('../../vitest.config.js')
  const exitCodeBefore = process.exitCode
  process.exitCode = undefined
  // vitest's logger ends the process 1 ms after SIGINT/SIGTERM: here the caller stops in order instead.
  const own = { SIGINT: new Set(process.listeners('SIGINT')), SIGTERM: new Set(process.listeners('SIGTERM')) }
  // The run's configuration as vitest.config.ts makes it, given as an object: no config file to bundle and load.
  const creating = createVitest(
    'test',
    {
      config: false,
      root: projectRoot,
      project: [o.project],
      reporters: o.reporters as string[],
      ...(o.outputJson !== undefined && { outputFile: { json: o.outputJson } }),
      run: true,
      watch: false,
    },
    configOf(run, (o.forks ?? ForksAhead.none()).pool()),
    { stdout: gated(process.stdout, stopped.signal), stderr: gated(process.stderr, stopped.signal) },
  )
  for (const sig of ['SIGINT', 'SIGTERM'] as const) for (const l of process.listeners(sig)) if (!own[sig].has(l)) process.off(sig, l as () => void)
  const vitest = await creating
  let timedOut = false
  let stopping: Promise<void> | undefined
  let forksStopped!: () => void
  const stoppedAll = new Promise<void>((resolve) => (forksStopped = resolve))
  const stop = () => {
    if (stopping) return
    // Sealed first (the reporters write nothing more), then the forks are stopped.
    stopped.abort()
    stopping = stopForks(vitest, o.graceMs)
    void stopping.then(forksStopped)
  }
  const onAbort = () => stop()
  o.signal.addEventListener('abort', onAbort, { once: true })
  const timer = o.timeoutMs !== undefined ? setTimeout(() => ((timedOut = true), stop()), o.timeoutMs) : undefined
  try {
    // Each project's workers are handed their machine and evidence folder here (plain vitest's global setup does it there).
    for (const p of vitest.projects) {
      if (!isExperimentsProject(p.name)) continue
      const given = provisionsOf(run, p.name)
      if (!given.machine) throw new Error(`the run's guest for ${p.name} was not prepared`)
      p.provide('oomlabRun', given.run)
      p.provide('oomlabMachine', given.machine)
    }
    if (!o.signal.aborted) {
      const running = vitest.start().then(
        () => undefined,
        (err: unknown) => {
          if (!stopping) throw err
        },
      )
      // Stopped: once its forks are dead, what vitest still does with this run is not waited for.
      await Promise.race([running, stoppedAll])
    }
    await stopping
  } finally {
    o.signal.removeEventListener('abort', onAbort)
    clearTimeout(timer)
    await closed(vitest, stopping !== undefined)
  }
  const exitCode = stopping ? 1 : (process.exitCode ?? 0)
  process.exitCode = exitCodeBefore
  return { exitCode: Number(exitCode), timedOut }
}

/** How long vitest has to close once its forks were stopped: it was not built to lose them. */
const CLOSE_AFTER_STOP_MS = 10_000

/**
 * vitest closed. After a stop its pool may wait on forks it lost; the run's report does not wait for it
 * (the CLI then ends without it: src/cli/main.ts exits once an interrupted run is reported).
 */
async function closed(vitest: Vitest, afterStop: boolean): Promise<void> {
  if (!afterStop) return vitest.close()
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_AFTER_STOP_MS)))
  await Promise.race([vitest.close(), late])
  clearTimeout(timer)
}

/**
 * vitest's forks, and what they started in this process group, get SIGTERM (each tears its own trees and
 * guests down); after the grace what is left gets SIGKILL, and is dead before this resolves.
 */
async function stopForks(vitest: Vitest, graceMs: number): Promise<void> {
  // No new test starts; results after this are not this run's to count (the caller says what did not run).
  void vitest.cancelCurrentRun('keyboard-input')
  const members = groupDescendants()
  signalAll(members, 'SIGTERM')
  const left = await descendantsEnded(members, graceMs)
  if (left.length > 0) {
    signalAll(left, 'SIGKILL')
    await descendantsEnded(left, 2000)
  }
}

/**
 * vitest's output (its reporters', its forks'), passed on until the run is stopped. What vitest says after
 * that is of the forks it lost to the interrupt ("Worker exited unexpectedly"), not of the run: a vitest of
 * its own process died with them and said nothing. The stream itself otherwise (its terminal, its width);
 * its write taken before vitest's live summary wraps the stream's own.
 */
function gated(to: NodeJS.WriteStream, stopped: AbortSignal): NodeJS.WriteStream {
  const write = to.write.bind(to) as (...args: unknown[]) => boolean
  const gatedWrite = (...args: unknown[]) => {
    if (!stopped.aborted) return write(...args)
    const done = args.find((a) => typeof a === 'function') as (() => void) | undefined
    done?.()
    return true
  }
  const proxy: NodeJS.WriteStream = new Proxy(to, {
    get: (target, key) => {
      if (key === 'write') return gatedWrite
      // A fork's output is piped in, and a pipe ends its destination when the fork ends: stream.pipe spares
      // process.stdout and process.stderr themselves, not a stand-in.
      if (key === 'end') return () => proxy
      const v = Reflect.get(target, key, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
  return proxy
}
