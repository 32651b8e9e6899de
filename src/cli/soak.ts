/**
 * oomlab soak: the harness under faults, then many runs in a row.
 *  1. In a restored runner guest (cgroup v2, root, vitest and the CLI as npm installs it; as a CI runner),
 *     the native path's fault tests of test/guest: the Lab's scenario and `oomlab reproduce --native`, each
 *     interrupted with SIGINT/SIGTERM at each stage, killed with SIGKILL and cleaned up by the next run, two
 *     runs at once.
 *  2. A restored guest's faults while an experiment waits on it (src/cli/soak-faults.ts): its kernel
 *     panics, it hangs, it runs out of memory itself, its channel is cut mid-frame; and the CLI
 *     interrupted with SIGINT/SIGTERM at random moments: each must be reported for what it is, with no
 *     QEMU and no temp dir left.
 *  3. The eight specs, each in a guest restored from a snapshot, until `--runs N` (200) spec runs have
 *     passed in a row on the default kernel and `--others N` (50) on each other kernel of the matrix
 *     (src/cli/soak-restored.ts), with the restore times' distribution; before them, `--boots N` (100)
 *     snapshot boots, counting soft lockups (the guest kernel panics on one).
 */
import { existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { mkdir, writeFile } from 'node:fs/promises'
import { execa } from 'execa'
import { GUEST_FAULTS, checkGuestFault } from './soak-faults.js'
import { DEFAULT_KERNEL, parseKernelSpec } from '../kernel/resolve.js'
import { MATRIX_DEFAULT } from './args.js'
import { stringFlag, type Parsed } from './flags.js'
import { positiveInt } from './args.js'
import { soakRestored, soakBoots, distribution, nativeFaultsInRunner, FAULT_TESTS_RECIPE, type SoakCount, type BootCount } from './soak-restored.js'
import { oomlabBin, projectRoot, userReports } from '../util/paths.js'
import { UserError, errorMessage } from '../util/errors.js'
import { log } from './experiments.js'
import { readStat } from '../proc/procfs.js'

/** This soak and the oomlab runs it started: a guest's folder is named after its owner's pid (src/vm/owned-dirs.ts). */
const ownPids = new Set([process.pid])

/**
 * QEMU processes and temp dirs of oomlab's on this host (compared before and after each check). Guests'
 * folders count only when this soak or a run it started owns them: other oomlab runs on the host make
 * and remove theirs all the time.
 */
async function hostLeftovers(): Promise<string[]> {
  const ours = (f: string) => /^oomlab-(kernel|bench)-/.test(f) || ownPids.has(Number(/^oomlab-vm-(\d+)-/.exec(f)?.[1]))
  const found = readdirSync(tmpdir()).filter(ours).map((f) => `temp dir ${join(tmpdir(), f)}`)
  // This soak's QEMUs only (its children: setpriv execs QEMU): another oomlab run's, started or stopping
  // meanwhile (two soaks side by side, both stopped with Ctrl-C), are not this check's leftovers.
  const ps = await execa('pgrep', ['-f', 'qemu-system-x86_64 .*oomlab-vm-'], { reject: false })
  for (const pid of String(ps.stdout).split('\n').filter(Boolean).map(Number))
    if (readStat(pid)?.ppid === process.pid) found.push(`QEMU ${pid}`)
  return found
}

interface Check {
  name: string
  ok: boolean
  detail: string
  ms: number
}

export async function soak(p: Parsed, signal: AbortSignal): Promise<number> {
  const v = { runs: stringFlag(p, 'runs'), others: stringFlag(p, 'others'), boots: stringFlag(p, 'boots'), 'boot-cpus': stringFlag(p, 'boot-cpus'), kernel: stringFlag(p, 'kernel'), kernels: stringFlag(p, 'kernels'), 'skip-faults': p.values['skip-faults'] === true }
  const runs = positiveInt('runs', v.runs, 0, 5000) ?? 200
  const others = positiveInt('others', v.others, 0, 5000) ?? 50
  const boots = positiveInt('boots', v.boots, 0, 5000) ?? 100
  // The soft lockup was met in guests of two vCPUs; lab guests have one: this boots others to compare.
  const bootCpus = positiveInt('boot-cpus', v['boot-cpus'], 1, 8)
  if (v.kernel !== undefined) parseKernelSpec(v.kernel)
  const defaultKernel = v.kernel ?? DEFAULT_KERNEL
  // The matrix's kernels; a cell with a mount option (bookworm+memory_localevents) restores its kernel's guests, soaked already.
  const kernels = v.kernels !== undefined ? v.kernels.split(',').filter(Boolean) : [defaultKernel, ...MATRIX_DEFAULT.filter((k) => k !== defaultKernel && !k.includes('+'))]
  for (const k of kernels) parseKernelSpec(k)
  if (!v['skip-faults'] && !existsSync(join(projectRoot, FAULT_TESTS_RECIPE)))
    throw new UserError(`the native fault tests come with the repository (${FAULT_TESTS_RECIPE} and the tests it names), not with the npm package: run \`npm run soak\` in a clone, or add --skip-faults`)
  const checks: Check[] = []
  // Another oomlab run on this host is not this soak's business: only what a check adds counts.
  const before = new Set(await hostLeftovers())
  const check = async (name: string, fn: () => Promise<string | undefined>) => {
    if (signal.aborted) return
    const t0 = performance.now()
    let problem: string | undefined
    let detail = ''
    try {
      problem = await fn()
    } catch (err) {
      problem = errorMessage(err)
    }
    const left = (await hostLeftovers()).filter((l) => !before.has(l))
    if (!problem && left.length) problem = `left behind: ${left.join(', ')}`
    detail = problem ?? 'ok'
    checks.push({ name, ok: problem === undefined, detail, ms: performance.now() - t0 })
    log(`${problem ? 'FAIL' : 'ok  '} ${name} (${((performance.now() - t0) / 1000).toFixed(1)} s)${problem ? `: ${problem}` : ''}`)
  }

  if (!v['skip-faults']) {
    await check('native fault tests in a restored runner guest (the Lab and the CLI: interrupts, SIGKILL, two runs at once)', async () => {
      const r = await nativeFaultsInRunner(v.kernel, signal)
      log(`native fault tests: ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped in ${(r.ms / 1000).toFixed(1)} s (restore ${(r.restoreMs / 1000).toFixed(2)} s)${r.leftovers.length ? `; left in the guest: ${r.leftovers.join(', ')}` : ''}`)
      if (r.failed === 0 && !r.broken && r.leftovers.length === 0 && r.passed > 0) return undefined
      const kept = join(userReports('soak'), 'native-faults.txt')
      await mkdir(dirname(kept), { recursive: true })
      await writeFile(kept, r.output)
      return `${r.failed} of ${r.passed + r.failed} failed${r.broken ? ', vitest itself failed' : ''}${r.leftovers.length ? `, left: ${r.leftovers.join(', ')}` : ''} (their output: ${kept})`
    })
    for (const f of GUEST_FAULTS) await check(`${f.name}, while an experiment waits on it`, () => checkGuestFault(f, v.kernel, signal))
    for (const [i, sig] of (['SIGINT', 'SIGTERM', 'SIGINT', 'SIGTERM'] as const).entries())
      // Every other one with its guest restored ahead: an interrupt meets both ways a run can restore.
      await check(`oomlab reproduce${i % 2 === 0 ? ', its guest restored ahead,' : ''} stopped with ${sig} at a random moment (${i + 1})`, async () => {
        const env = { OOMLAB_RESTORE_AHEAD: i % 2 === 0 ? '1' : '0' }
        const child = execa(process.execPath, [oomlabBin, 'reproduce', '--vm', ...(v.kernel ? ['--kernel', v.kernel] : []), '02-'], { reject: false, all: true, env })
        if (child.pid !== undefined) ownPids.add(child.pid)
        // Within a run's length (~3 s with its guest cached): the signal lands in its start, its experiment or its report.
        const at = 200 + Math.floor(Math.random() * 2800)
        const timer = setTimeout(() => child.kill(sig), at)
        const r = await child
        clearTimeout(timer)
        const out = String(r.all)
        if (r.exitCode === 0) {
          log(`the run finished before its ${sig} at ${at} ms: nothing to check beyond what it left`)
          return undefined
        }
        if (r.exitCode === 130 && /interrupted|SIGINT|SIGTERM/.test(out)) {
          log(`${sig} at ${at} ms: the run stopped with 130`)
          return undefined
        }
        return `exit ${r.exitCode} after ${sig} at ${at} ms: ${out.split('\n').slice(-3).join(' | ')}`
      })
  }

  const bootCounts: BootCount[] = []
  if (boots > 0 && !signal.aborted)
    await check(`${boots} snapshot boots on ${defaultKernel}${bootCpus ? ` (${bootCpus} vCPUs)` : ''}`, async () => {
      const c = await soakBoots(defaultKernel, boots, signal, bootCpus)
      bootCounts.push(c)
      if (c.failed > 0) return `${c.failed} of ${c.boots} failed: ${c.failures.slice(0, 3).join('; ')}`
      return c.boots < boots ? `interrupted after ${c.boots} of ${boots} boots (none failed)` : undefined
    })
  const counts: SoakCount[] = []
  for (const k of kernels) {
    if (signal.aborted) break
    const target = k === defaultKernel ? runs : others
    if (target === 0) continue
    await check(`${target} spec runs in a row on ${k}, each in a restored guest`, async () => {
      const c = await soakRestored(k, target, signal)
      counts.push(c)
      return c.streak >= target ? undefined : `${c.streak} in a row at the end (best ${c.bestStreak}); ${c.failed} of ${c.runs} failed: ${c.failures.slice(0, 3).join('; ')}`
    })
  }
  const failed = checks.filter((c) => !c.ok)
  console.log(`\noomlab soak: ${checks.length - failed.length} of ${checks.length} checks passed`)
  for (const c of bootCounts)
    console.log(`  ${c.kernel}: ${c.boots} snapshot boots, ${c.failed} failed, ${Math.round(c.guestSeconds)} guest-seconds of booting${c.failed === 0 && c.guestSeconds > 0 ? ` (no soft lockup: its rate per guest-second is below ${(3 / c.guestSeconds).toExponential(1)}, 95%)` : ''}`)
  for (const c of counts)
    console.log(`  ${c.kernel} (${c.release ?? '?'}): ${c.streak} in a row of ${c.target} asked; ${c.runs} spec runs, ${c.failed} failed${c.unsupported ? `, ${c.unsupported} unsupported` : ''}; ${c.ahead} of them in guests restored ahead; restore to agent answering: ${distribution(c.restoreMs)}`)
  for (const c of failed) console.log(`  FAIL ${c.name}: ${c.detail}`)
  if (signal.aborted) return 130
  return failed.length === 0 ? 0 : 1
}
