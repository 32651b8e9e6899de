/**
 * The soak's main phase: the eight specs, each in a guest restored from its kernel's snapshot, round
 * after round, until `target` spec runs have passed in a row on that kernel. A failure keeps its round's
 * report, the guest's console and, when the guest kernel reported a BUG, panic or lockup, that report.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { dir as tmpDir } from 'tmp-promise'
import { prepareLabGuest, remakeSnapshotIn } from '../vm/prepare.js'
import { UserError, errorMessage } from '../util/errors.js'
import { availableParallelism } from 'node:os'
import { newRunId, type RunConfig } from '../run/config.js'
import { articleSpecs } from '../run/resolve.js'
import { labSpecs } from '../run/images.js'
import { projectRoot, packageRoot, userReports } from '../util/paths.js'
import { existsSync } from 'node:fs'
import { execa } from 'execa'
import { log, runExperiments } from './experiments.js'
import { openGuestOs } from '../vm/restore.js'
import { ROOT } from '../experiment/lab.js'
import { GUEST_BUNDLE, GUEST_PROJECT } from '../vm/in-guest/layout.js'
import { parseImageAddition, type ImageAddition } from '../vm/image/recipes.js'
import { readFile } from 'node:fs/promises'

export interface SoakCount {
  kernel: string
  release?: string
  target: number
  /** The longest run of passes in a row, and the one still going at the end. */
  bestStreak: number
  streak: number
  runs: number
  failed: number
  unsupported: number
  restoreMs: number[]
  /** Spec runs whose guest was restored ahead. */
  ahead: number
  failures: string[]
}


export async function soakRestored(kernel: string, target: number, signal: AbortSignal): Promise<SoakCount> {
  const count: SoakCount = { kernel, target, bestStreak: 0, streak: 0, runs: 0, failed: 0, unsupported: 0, restoreMs: [], ahead: 0, failures: [] }
  const say = (line: string) => log(`soak [${kernel}] ${line}`)
  const guest = await prepareLabGuest({ kernel, accel: 'auto' }, { log: say, signal })
  count.release = guest.kernel.release
  const base = join(userReports('soak'), kernel)
  await rm(base, { recursive: true, force: true })
  // The lab image's eight: the runtimes' specs run in an image of their own.
  const specs = labSpecs(articleSpecs())
  // Enough rounds for the target after a failure or two; a kernel that keeps failing stops there.
  const maxRounds = Math.ceil(target / specs.length) * 2 + 2
  for (let round = 1; round <= maxRounds && count.streak < target && !signal.aborted; round++) {
    const dir = join(base, `round-${round}`)
    // As `oomlab reproduce` runs them, both ways it can: every other round with its first guests restored ahead
    // (src/vm/ahead.ts, the default where cores are to spare), the others restored by the workers.
    const config: RunConfig = {
      id: `${newRunId()}-r${round}`,
      by: 'cli',
      machine: { kind: 'guest', accel: 'auto', append: [], refresh: false, restoreAhead: round % 2 === 1 },
      kernels: [{ name: kernel }],
      specs,
      jobs: availableParallelism(),
      report: dir,
    }
    const out = await runExperiments(config, signal, { prepared: { [kernel]: guest } })
    if (signal.aborted) break
    const run = out.runs[0]!
    let bad = 0
    for (const o of out.tally.outcomes) {
      count.runs++
      const e = run.evidence.find((x) => x.file === o.scenario)
      if (e?.machine?.restoreMs !== undefined) count.restoreMs.push(e.machine.restoreMs)
      if (e?.machine?.restoredAhead) count.ahead++
      if (o.status === 'unsupported') {
        count.unsupported++
        continue
      }
      if (o.status === 'pass') {
        count.streak++
        count.bestStreak = Math.max(count.bestStreak, count.streak)
        continue
      }
      bad++
      count.failed++
      count.streak = 0
      const what = `round ${round}, ${o.scenario}: ${o.reason ?? o.status}`
      count.failures.push(what)
      say(`FAIL ${what}`)
      if (e?.machine?.console) await writeFile(join(dir, `${o.scenario}.console.txt`), e.machine.console.tail.length ? `${e.machine.console.tail.join('\n')}\n` : '(the guest printed nothing on its console after the restore)\n')
      if (e?.machine?.console?.incident) {
        await writeFile(join(dir, `${o.scenario}.kernel-incident.txt`), `${e.machine.console.incident.join('\n')}\n`)
        say(`  the guest kernel's report (BUG/panic/lockup, backtraces): ${join(dir, `${o.scenario}.kernel-incident.txt`)}`)
      }
    }
    if (out.failure !== undefined) {
      bad++
      count.failed++
      count.streak = 0
      count.failures.push(`round ${round}: ${out.failure}`)
      say(`FAIL round ${round}: ${out.failure}`)
    }
    say(`round ${round}: ${out.tally.passed} of ${out.tally.outcomes.length} passed; ${count.streak} in a row of ${target}`)
    if (bad === 0) await rm(dir, { recursive: true, force: true })
  }
  await mkdir(base, { recursive: true })
  return count
}

/** min / median / p95 / max of a list of ms, in seconds. */
export function distribution(ms: number[]): string {
  if (ms.length === 0) return 'none'
  const s = [...ms].sort((a, b) => a - b)
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))]!
  const f = (x: number) => `${(x / 1000).toFixed(2)} s`
  return `min ${f(s[0]!)}, median ${f(at(0.5))}, p95 ${f(at(0.95))}, max ${f(s.at(-1)!)} (${s.length} restores)`
}

export interface BootCount {
  kernel: string
  boots: number
  failed: number
  /** Guest-seconds spent booting, from QEMU's start to the agent ready: the phase the soft lockup struck. */
  guestSeconds: number
  failures: string[]
}

/**
 * Snapshot boots: the guest booted to its agent's ready state `n` times, as making a snapshot does (each
 * into a temp cache, removed after). A soft lockup in early userspace has been seen once in 31 boots;
 * the guest kernel panics on one (softlockup_panic=1), so a boot that hits it fails with its report.
 */
export async function soakBoots(kernel: string, n: number, signal: AbortSignal, cpus?: number): Promise<BootCount> {
  const count: BootCount = { kernel, boots: 0, failed: 0, guestSeconds: 0, failures: [] }
  const say = (line: string) => log(`soak boots [${kernel}] ${line}`)
  const guest = await prepareLabGuest({ kernel, accel: 'auto', ...(cpus !== undefined && { cpus }) }, { log: () => undefined, signal })
  const base = join(userReports('soak'), `${kernel}-boots`)
  await rm(base, { recursive: true, force: true })
  for (let i = 1; i <= n && !signal.aborted; i++) {
    const tmp = await tmpDir({ prefix: 'oomlab-boot-', unsafeCleanup: true })
    const console: string[] = []
    try {
      const ms = await remakeSnapshotIn(guest, tmp.path, { signal, onConsole: (l) => console.push(l) })
      count.boots++
      count.guestSeconds += ms / 1000
    } catch (err) {
      if (signal.aborted) break
      count.boots++
      count.failed++
      count.failures.push(`boot ${i}: ${errorMessage(err)}`)
      await mkdir(base, { recursive: true })
      await writeFile(join(base, `boot-${i}-console.txt`), `${console.join('\n')}\n`)
      say(`FAIL boot ${i}: ${errorMessage(err)} (console: ${join(base, `boot-${i}-console.txt`)})`)
    } finally {
      await tmp.cleanup()
    }
    if (i % 10 === 0) say(`${i} of ${n}: ${count.failed} failed, ${Math.round(count.guestSeconds)} guest-seconds`)
  }
  return count
}

export interface FaultsOutcome {
  passed: number
  failed: number
  skipped: number
  /** vitest itself failed, or saw errors outside the tests. */
  broken: boolean
  leftovers: string[]
  /** The guest's restore, and the whole run of the fault tests in it. */
  restoreMs: number
  ms: number
  /** What the fault tests printed (its tail), kept for a failure. */
  output: string
}

/**
 * The native fault tests' recipe, as data outside the product (the harness's image builder never names
 * them): the image addition, and the entry that runs them (`run`, in the addition's bundle folder).
 */
export const FAULT_TESTS_RECIPE = 'scripts/fault-tests.json'
/** Where the runner guest writes vitest's JSON results of the fault tests. */
const FAULTS_RESULTS = '/tmp/oomlab-faults.json'

async function readFaultTestsRecipe(): Promise<{ image: ImageAddition & { bundle: NonNullable<ImageAddition['bundle']> }; run: string }> {
  const path = join(projectRoot, FAULT_TESTS_RECIPE)
  if (!existsSync(path)) throw new UserError(`the native fault tests come with the repository (${FAULT_TESTS_RECIPE} and the tests it names), not with the npm package: run \`npm run soak\` in a clone`)
  let v: { image?: unknown; run?: unknown }
  try {
    v = JSON.parse(await readFile(path, 'utf8')) as typeof v
  } catch (err) {
    throw new UserError(`${path} is not valid JSON: ${errorMessage(err)}`)
  }
  if (typeof v.run !== 'string') throw new UserError(`${path}: run is missing or not a string`)
  const image = parseImageAddition(v.image, `${path} (image)`)
  if (!image.bundle) throw new UserError(`${path}: image.bundle is missing: the runner guest runs the tests it bundles`)
  return { image: { ...image, bundle: image.bundle }, run: v.run }
}

/**
 * The native path's fault tests (interrupts at every stage, SIGKILL and the next run's reaping, two runs
 * at once), run for real by vitest inside a restored runner guest: a CI runner with cgroup v2, as root,
 * its job in a cgroup of its own beside the trees the tests make.
 */
export async function nativeFaultsInRunner(kernel: string | undefined, signal: AbortSignal, filters: string[] = []): Promise<FaultsOutcome> {
  const say = (line: string) => log(`soak faults ${line}`)
  const recipe = await readFaultTestsRecipe()
  // The runner carries the CLI as npm installs it: compiled from these sources first.
  if (recipe.image.installedPackage) {
    say('building the package the runner guest carries (npm run build)')
    const built = await execa('npm', ['run', 'build'], { cwd: packageRoot, reject: false, all: true, cancelSignal: signal })
    if (built.exitCode !== 0) throw new Error(`npm run build failed: ${String(built.all).slice(-600)}`)
  }
  const guest = await prepareLabGuest({ ...(kernel !== undefined && { kernel }), accel: 'auto', addition: recipe.image }, { log: say, signal })
  const t0 = performance.now()
  await using os = await openGuestOs(guest, { signal, log: say })
  const job = '/sys/fs/cgroup/runner-job'
  const [made] = await os.run([{ op: 'mkdir', path: job }])
  if (!made?.ok) throw new Error(`mkdir ${job} in the runner guest: ${made?.error}`)
  const entry = join(GUEST_BUNDLE, recipe.image.bundle.to, recipe.run)
  const p = await os.spawn({ argv: ['node', entry, FAULTS_RESULTS, ...filters], cgroup: job, user: ROOT, cwd: GUEST_PROJECT, stdin: 'ignore', timeoutMs: 60_000 })
  say(`running in a runner guest restored in ${(os.restoreMs / 1000).toFixed(2)} s (${guest.kernel.release}, ${guest.spec.cpus} vCPUs, ${guest.spec.memoryMiB} MiB)`)
  await os.waitExit([{ pid: p.pid, startTime: p.startTime, label: 'the fault tests' }], FAULTS_DEADLINE_MS)
  const output = await os.output(p.id)
  const line = /^oomlab-faults (\{.*\})$/m.exec(output)
  if (!line) throw new Error(`the fault tests ended without their result line; they printed: ${output.slice(-600)}`)
  const r = JSON.parse(line[1]!) as { passed: number; failed: number; skipped: number; broken: boolean; leftovers: string[] }
  // Each failed test's name and message, whole, from vitest's JSON results.
  const [results] = await os.run([{ op: 'read', path: FAULTS_RESULTS }])
  const failures: string[] = []
  if (results?.ok && typeof results.value === 'string') {
    const j = JSON.parse(results.value) as { testResults: { assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[] }
    for (const f of j.testResults) for (const a of f.assertionResults) if (a.status === 'failed') failures.push(`${a.fullName}: ${a.failureMessages.join(' | ').slice(0, 1500)}`)
  }
  return { ...r, restoreMs: os.restoreMs, ms: performance.now() - t0, output: [...failures, '', output.slice(-4000)].join('\n') }
}

/** 24 interrupted runs, a SIGKILL and its reaping, two at once: ~10 min under TCG on 2 cores. */
const FAULTS_DEADLINE_MS = 30 * 60_000
