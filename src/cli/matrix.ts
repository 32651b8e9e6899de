/**
 * oomlab matrix: every experiment spec on each kernel (by default every reachable Debian line),
 * in VMs with bounded parallelism, then one report over all of them.
 */
import { parseArgs } from 'node:util'
import { availableParallelism } from 'node:os'
import { mkdir, writeFile, rm } from 'node:fs/promises'
import { join, resolve, dirname } from 'node:path'
import { runInVm, vmRunFailure } from '../vm/runner.js'
import { parseKernelSpec, kernelFromImage } from '../vm/kernels.js'
import { readEvidenceDir } from '../report/evidence.js'
import { writeReport, formatTable } from '../report/write.js'
import { cellOf, scenarioIds, type KernelRun } from '../report/matrix.js'
import { projectRoot, cacheDir } from '../util/paths.js'
import { guestTree, buildInitramfs } from '../vm/initramfs.js'
import { UserError, errorMessage } from '../util/errors.js'
import { log } from './experiments.js'

/** 0 all passed; 1 something failed; 3 nothing failed but some scenario is unsupported on some kernel; 130 interrupted. */
export function exitCodeOf(o: { failed: number; unsupported: number; interrupted: boolean }): number {
  if (o.interrupted) return 130
  if (o.failed > 0) return 1
  return o.unsupported > 0 ? 3 : 0
}

export const MATRIX_DEFAULT = ['bullseye', 'bookworm', 'trixie', 'sid']

const USAGE = 'oomlab matrix [KERNEL...] [--kernel-image PATH]... [--jobs N] [--report DIR] [--spec FILTER]... [--accel auto|kvm|tcg] [--memory MiB] [--cpus N]'

function whole(flag: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UserError(`--${flag} ${JSON.stringify(v)}: expected a whole number from ${min} to ${max}`)
  return Number(v)
}

/** Runs `jobs` at a time, in order of the list. */
async function bounded<T, R>(items: readonly T[], jobs: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker))
  return results
}

export async function matrix(argv: string[], signal: AbortSignal): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'kernel-image': { type: 'string', multiple: true },
        jobs: { type: 'string' },
        report: { type: 'string' },
        spec: { type: 'string', multiple: true },
        accel: { type: 'string' },
        memory: { type: 'string' },
        cpus: { type: 'string' },
      },
    })
  } catch (err) {
    throw new UserError(`${(err as Error).message.split(/\.\s/)[0]} (${USAGE})`)
  }
  const v = parsed.values
  const images = v['kernel-image'] ?? []
  const names = parsed.positionals.length || images.length ? parsed.positionals : MATRIX_DEFAULT
  for (const n of names) parseKernelSpec(n)
  const accel = (v.accel ?? 'auto') as 'auto' | 'kvm' | 'tcg'
  if (!['auto', 'kvm', 'tcg'].includes(accel)) throw new UserError(`--accel ${JSON.stringify(v.accel)}: expected auto, kvm or tcg`)
  // One VM per core: measured on 2 cores, two kernels took 63.5 s with 2 VMs at once and 97.2 s one
  // at a time (each guest slower, 61 s against 47.5 s, but the two overlap).
  const jobs = whole('jobs', v.jobs, 1, 16) ?? Math.max(1, availableParallelism())
  const memoryMiB = whole('memory', v.memory, 512, 65536)
  const cpus = whole('cpus', v.cpus, 1, 64)
  for (const f of v.spec ?? []) if (!/^[\w.-]+$/.test(f)) throw new UserError(`--spec ${JSON.stringify(f)}: use part of a spec file name, e.g. 02-leaf`)
  for (const image of images) await kernelFromImage(image)
  const reportDir = resolve(v.report ?? join(projectRoot, 'reports', 'matrix'))
  await rm(join(reportDir, 'evidence'), { recursive: true, force: true })

  const targets: { name: string; image?: string }[] = [...names.map((name) => ({ name })), ...images.map((image) => ({ name: image, image }))]
  log(`matrix: ${targets.map((t) => t.name).join(', ')}; ${jobs} VM(s) at a time; report in ${reportDir}`)
  const t0 = performance.now()
  // One image for every kernel: the same harness everywhere, built once.
  const initramfs = await buildInitramfs(cacheDir(), await guestTree())
  log(`initramfs: ${initramfs.reused ? 'reused' : initramfs.rebuiltBecause ? `rebuilt (the cached one failed its check: ${initramfs.rebuiltBecause})` : 'built'} ${(initramfs.bytes / 1e6).toFixed(0)} MB in ${(initramfs.ms / 1000).toFixed(1)} s`)
  const runs = await bounded(targets, jobs, async (t): Promise<KernelRun> => {
    const tag = `[${t.name}]`
    const evidenceDir = join(reportDir, 'evidence', t.name.replace(/[^\w.+-]/g, '_'))
    try {
      let testing = false
      const vm = await runInVm({
        ...(t.image ? { kernelImage: t.image } : { kernel: t.name }),
        accel,
        initramfs,
        ...(memoryMiB && { memoryMiB }),
        ...(cpus && { cpus }),
        filters: v.spec ?? [],
        log: (line) => log(`${tag} ${line}`),
        // The guests' consoles would interleave: progress is said in one line per step instead.
        onConsole: (line) => {
          if (!testing && /RUN\s+v\d/.test(line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''))) {
            testing = true
            log(`${tag} testing`)
          }
        },
        signal,
      })
      for (const [name, content] of vm.files) {
        const dest = join(evidenceDir, name.replace(/^evidence\//, ''))
        if (!dest.startsWith(`${evidenceDir}/`)) continue
        await mkdir(dirname(dest), { recursive: true })
        await writeFile(dest, content)
      }
      const failure = vmRunFailure(vm)
      if (failure) log(`${tag} FAILED: ${failure}${vm.run.consoleTail.length ? `; last console line: ${vm.run.consoleTail.at(-1)}` : ''}`)
      log(`${tag} done in ${(vm.timings.totalMs / 1000).toFixed(1)} s: ${vm.result?.passed ?? 0} passed, ${vm.result?.failed ?? 0} failed, ${vm.result?.skipped ?? 0} unsupported`)
      return {
        name: t.name,
        release: vm.hello?.release ?? vm.kernel.release,
        where: 'vm',
        ...(failure && { failure }),
        evidence: await readEvidenceDir(evidenceDir),
        timings: { ...vm.timings },
      }
    } catch (err) {
      log(`${tag} FAILED: ${errorMessage(err)}`)
      return { name: t.name, where: 'vm', failure: errorMessage(err), evidence: [] }
    }
  })
  await writeReport(reportDir, runs)
  console.log(`\n${formatTable(runs)}\n`)
  console.log(`oomlab: matrix of ${runs.length} kernel(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s; report in ${reportDir} (summary.txt, report.md, report.json, junit.xml, figures/)`)
  const ids = scenarioIds(runs)
  const statuses = runs.flatMap((r) => (ids.length ? ids.map((id) => cellOf(r, id).status) : ['fail']))
  const failed = statuses.filter((s) => s === 'fail').length + runs.filter((r) => r.failure && r.evidence.length > 0).length
  const passed = statuses.filter((s) => s === 'pass').length
  const unsupported = statuses.filter((s) => s === 'unsupported').length
  if (unsupported) console.log(`oomlab: ${unsupported} scenario/kernel pair(s) unsupported (skipped; see the report)`)
  console.log(`oomlab: ${passed} passed, ${failed} failed${unsupported ? `, ${unsupported} skipped` : ''}`)
  return exitCodeOf({ failed, unsupported, interrupted: signal.aborted })
}
