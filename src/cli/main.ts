/** oomlab: reproduce the article's memory.oom.group experiments on a real kernel. */
import { cacheLimit } from '../vm/cache.js'
import { parseRunArgs, USAGE } from './args.js'
import { runExperiments, runVitest, log, endProgress } from './experiments.js'
import { exitCodeOf } from './matrix.js'
import { preflight, formatCheck } from '../host/preflight.js'
import { UserError, errorMessage } from '../util/errors.js'
import { setGracefulCleanup } from 'tmp-promise'
import { kernelFromImage } from '../kernel/image.js'
import { timeoutScale } from '../util/timeout-scale.js'
import { workloadUser } from '../proc/spawn.js'
import { handleSignalsHere } from '../util/signals.js'

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

async function doctor(): Promise<number> {
  const checks = await preflight()
  for (const c of checks) console.log(formatCheck(c))
  const failing = checks.filter((c) => !c.ok)
  console.log(failing.length === 0 ? 'The experiments can run natively here.' : 'The experiments cannot run natively here; `npm test` runs them in a VM instead.')
  return failing.length === 0 ? 0 : 1
}

async function reproduce(argv: string[], withUnit: boolean): Promise<number> {
  const args = parseRunArgs(argv)
  if (args.help) {
    console.log(USAGE)
    return 0
  }
  // Not a kernel: say so now, not after the unit tests.
  if (args.kernelImage !== undefined) await kernelFromImage(args.kernelImage)
  let passed = 0
  let failed = 0
  /** Unit tests skipped (each says why in its name), counted in the closing line. */
  let skipped = 0
  if (withUnit) {
    log('unit tests')
    const u = await runVitest('unit', [], process.env as Record<string, string>, controller.signal)
    passed += u.passed
    failed += u.failed
    skipped += u.skipped
    if (u.exitCode !== 0 && u.failed === 0) failed++ // vitest itself failed
    if (controller.signal.aborted) return 130
  }
  const out = await runExperiments(args, controller.signal)
  passed += out.passed
  failed += out.failed
  if (out.summary) console.log(`\n${out.summary}\n`)
  if (out.ran)
    console.log(`oomlab: the experiments ran ${out.where === 'vm' ? `in QEMU guests (${out.accel === 'kvm' ? 'KVM' : 'TCG, no KVM'})` : 'natively'} on kernel ${out.kernelRelease ?? 'unknown'}; report in ${out.reportDir} (summary.txt, report.md, report.json, junit.xml, vitest.json, figures/, evidence/)`)
  if (out.failure) {
    log(`FAILED: ${out.failure}`)
    failed++
  }
  if (out.unsupported) console.log(`oomlab: ${out.unsupported} scenario(s) unsupported on this kernel (skipped; see the report)`)
  if (skipped) console.log(`oomlab: ${skipped} unit test(s) skipped (each says why in its name, above)`)
  console.log(`oomlab: ${passed} passed, ${failed} failed${out.unsupported + skipped ? `, ${out.unsupported + skipped} skipped` : ''}`)
  return exitCodeOf({ failed, unsupported: out.unsupported, interrupted })
}

/** The environment's knobs, checked before anything starts: a bad value is a usage error. */
function checkEnvironment(env: NodeJS.ProcessEnv): void {
  try {
    timeoutScale(env.OOMLAB_TIMEOUT_SCALE)
    cacheLimit(env.OOMLAB_CACHE_LIMIT)
  } catch (err) {
    throw new UserError((err as Error).message)
  }
  workloadUser(env)
}

/** `oomlab cache | head`: for a listing, a reader that leaves early is not an error. */
function listing(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') process.stderr.write(`oomlab: writing the listing: ${err.message}\n`)
    process.exit(err.code === 'EPIPE' ? 0 : 1)
  })
}

function noOptions(cmd: string, rest: string[]): void {
  if (rest.length > 0) throw new UserError(`${cmd} takes no options or arguments (got ${JSON.stringify(rest.join(' '))})`)
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  checkEnvironment(process.env)
  switch (cmd) {
    case 'reproduce':
      return reproduce(rest, false)
    case 'test':
      return reproduce(rest, true)
    case 'doctor':
      noOptions(cmd, rest)
      return doctor()
    case 'bench': {
      const { bench } = await import('./bench.js')
      return bench(rest, controller.signal)
    }
    case 'soak': {
      const { soak } = await import('./soak.js')
      return soak(rest, controller.signal)
    }
    case 'matrix': {
      const { matrix } = await import('./matrix.js')
      return matrix(rest, controller.signal)
    }
    case '__in-scope': {
      const { inScope } = await import('./in-scope.js')
      return inScope(rest, controller.signal)
    }
    case 'kernels': {
      noOptions(cmd, rest)
      listing()
      const { listKernels } = await import('./kernels.js')
      return listKernels()
    }
    case 'cache': {
      listing()
      const { cache } = await import('./cache.js')
      return cache(rest)
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(USAGE)
      return cmd === undefined ? 2 : 0
    default:
      throw new UserError(`unknown command "${cmd}": use reproduce, test, matrix, doctor, bench, soak, kernels or cache`)
  }
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
