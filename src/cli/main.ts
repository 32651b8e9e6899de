/** oomlab: reproduce the article's memory.oom.group experiments on a real kernel. */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setGracefulCleanup } from 'tmp-promise'
import { cacheLimit } from '../vm/cache.js'
import { kernelFromImage } from '../kernel/image.js'
import { DEFAULT_KERNEL } from '../kernel/resolve.js'
import { prepareLabGuest } from '../vm/prepare.js'
import { UserError, errorMessage } from '../util/errors.js'
import { timeoutScale } from '../util/timeout-scale.js'
import { packageRoot, projectRoot } from '../util/paths.js'
import { which } from '../util/which.js'
import { workloadUser } from '../proc/spawn.js'
import { handleSignalsHere } from '../util/signals.js'
import { resolveRun } from '../run/resolve.js'
import { runExperiments, runUnitTests, log, endProgress, progress } from './experiments.js'
import { reproduceRequest, matrixRequest } from './args.js'
import { COMMANDS, generalHelp } from './commands.js'
import { parseFlags, helpOf, stringFlag, type Parsed } from './flags.js'
import { printOutcome, exitCodeOf, notReadyOf } from './outcome.js'
import { doctor } from './doctor.js'

// Temp dirs go even when a second Ctrl-C ends the process at once.
setGracefulCleanup()

const controller = new AbortController()
let interrupted = false
// The CLI stops in order on a signal: the guests' and trees' own teardown handlers must not end it first.
handleSignalsHere()
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    if (interrupted) process.exit(130) // a second Ctrl-C: give up at once
    interrupted = true
    log(`${sig}: stopping (the guest and every process of the run are being stopped)`)
    controller.abort(new Error(sig))
  })

const version = () => (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version

/** The variables every command reads, checked before anything starts: a bad value is a usage error. */
function checkEnvironment(env: NodeJS.ProcessEnv): void {
  try {
    timeoutScale(env.OOMLAB_TIMEOUT_SCALE)
    cacheLimit(env.OOMLAB_CACHE_LIMIT)
  } catch (err) {
    throw new UserError((err as Error).message)
  }
  workloadUser(env)
}

/** The unit tests ship with the repository, not with the installed package. */
const hasUnitTests = () => existsSync(join(projectRoot, 'test')) && existsSync(join(projectRoot, 'src/cli/main.ts'))

/**
 * The guest the unit tests of restored guests use (the default kernel's), prepared before they run so a
 * fresh machine runs them too (the experiments then find its snapshot in the cache).
 */
async function prepareForUnitTests(signal: AbortSignal): Promise<void> {
  if (!which('qemu-system-x86_64') || process.getuid?.() !== 0) return
  log(`unit tests: preparing a ${DEFAULT_KERNEL} guest for the tests of restored guests`)
  await prepareLabGuest({ kernel: DEFAULT_KERNEL, accel: 'auto' }, { log, progress, signal })
  endProgress()
}

async function run(cmd: 'reproduce' | 'test' | 'matrix', p: Parsed): Promise<number> {
  const req = cmd === 'matrix' ? matrixRequest(p) : reproduceRequest(p)
  // Not a kernel: say so now, not after the unit tests.
  for (const k of req.kernels ?? []) if (k.image !== undefined) await kernelFromImage(k.image)
  const config = await resolveRun(req, process.env, log)
  let unit = { passed: 0, failed: 0, skipped: 0 }
  if (cmd === 'test') {
    if (hasUnitTests()) {
      await prepareForUnitTests(controller.signal)
      log('unit tests')
      unit = await runUnitTests(controller.signal)
      if (controller.signal.aborted) return 130
    } else log('unit tests: not in the installed package (they ship with the repository); running the experiments')
  }
  const outcome = await runExperiments(config, controller.signal)
  const counts = printOutcome(outcome, unit)
  const code = exitCodeOf({ ...counts, interrupted, notReady: notReadyOf(outcome) })
  if (code === 125) log('exit 125: the kernel of a source tree did not build or did not boot (the reason is above); `git bisect run` skips this commit')
  return code
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    console.log(generalHelp(version()))
    return cmd === undefined ? 2 : 0
  }
  if (cmd === '--version' || cmd === '-v') {
    console.log(version())
    return 0
  }
  if (cmd === '__in-scope') {
    const { inScope } = await import('./in-scope.js')
    return inScope(rest, controller.signal)
  }
  const def = COMMANDS[cmd]
  if (!def) throw new UserError(`unknown command "${cmd}": use ${Object.keys(COMMANDS).join(', ')} (oomlab --help)`)
  const p = parseFlags(def, rest)
  if (p.values.help === true) {
    console.log(helpOf(def))
    return 0
  }
  checkEnvironment(process.env)
  switch (cmd) {
    case 'reproduce':
    case 'test':
    case 'matrix':
      return run(cmd, p)
    case 'doctor':
      return doctor()
    case 'bench': {
      const { bench } = await import('./bench.js')
      return bench(p, controller.signal)
    }
    case 'soak': {
      const { soak } = await import('./soak.js')
      return soak(p, controller.signal)
    }
    case 'kernel': {
      const { kernelCommand } = await import('./kernel.js')
      return kernelCommand(p, controller.signal)
    }
    case 'kernels': {
      listing()
      const { listKernels } = await import('./kernels.js')
      return listKernels()
    }
    case 'cache': {
      listing()
      const { cache } = await import('./cache.js')
      const sub = p.positionals[0]
      if (p.positionals.length > 1 || (sub !== undefined && sub !== 'prune' && sub !== 'key')) throw new UserError(`cache: unexpected ${JSON.stringify(p.positionals.join(' '))} (see oomlab cache --help)`)
      const kernel = stringFlag(p, 'kernel')
      if ((sub === 'key') !== (kernel !== undefined)) throw new UserError('usage: oomlab cache key --kernel NAME')
      return cache(sub === 'key' ? ['key', '--kernel', kernel!] : sub ? [sub] : [])
    }
    default:
      throw new UserError(`unknown command "${cmd}" (oomlab --help)`)
  }
}

/** `oomlab cache | head`: for a listing, a reader that leaves early is not an error. */
function listing(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') process.stderr.write(`oomlab: writing the listing: ${err.message}\n`)
    process.exit(err.code === 'EPIPE' ? 0 : 1)
  })
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  // A live progress line is cleared before the message, not run into it.
  endProgress()
  if (interrupted) {
    process.stderr.write(`oomlab: interrupted\n`)
    if (process.env.OOMLAB_DEBUG) process.stderr.write(`${(err as Error).stack}\n`)
    process.exitCode = 130
  } else if (err instanceof UserError) {
    process.stderr.write(`oomlab: ${err.message}\n`)
    process.exitCode = err.exitCode
  } else {
    process.stderr.write(`oomlab: ${errorMessage(err)}\n`)
    if (process.env.OOMLAB_DEBUG) process.stderr.write(`${(err as Error).stack}\n`)
    process.exitCode = 1
  }
}
// Interrupted and said so: nothing of the run is left to wait for (a stopped vitest may still hold handles).
if (interrupted) process.exit()
