/**
 * junit.xml of the report folder: vitest's own JUnit reporter, given one suite per kernel (per
 * experiments project: `experiments` or `experiments@<kernel>` in a matrix) instead of one per file, and
 * one test case per spec, named "<spec>: <test>". vitest names suites by file: a matrix would otherwise
 * give four suites named alike.
 */
import { join } from 'node:path'
import { JUnitReporter } from 'vitest/node'
import type { TestModule, Vitest } from 'vitest/node'
import type { RunnerTestFile, RunnerTask } from 'vitest'
import { isExperimentsProject, reportPaths, specIdOf } from '../report/paths.js'
import { kernelOfProject } from '../run/config.js'
import { collectRuns, readTally } from '../run/report.js'
import { currentRun } from './context.js'

const flatten = (t: RunnerTask): RunnerTask[] => (t.type === 'suite' ? t.tasks.flatMap(flatten) : [t])

export default class KernelJUnitReporter extends JUnitReporter {
  private vitest: Vitest | undefined

  constructor(options: ConstructorParameters<typeof JUnitReporter>[0] = {}) {
    super({ suiteName: 'oom-group-lab', ...options })
  }

  // The file is opened at the end: the report folder is cleared when the run starts.
  override async onInit(vitest: Vitest): Promise<void> {
    this.vitest = vitest
  }

  override async onTestRunEnd(modules: ReadonlyArray<TestModule>): Promise<void> {
    const byProject = new Map<string, TestModule[]>()
    for (const m of modules) if (isExperimentsProject(m.project.name)) byProject.set(m.project.name, [...(byProject.get(m.project.name) ?? []), m])
    if (byProject.size === 0 || !this.vitest) return
    const run = await currentRun().catch(() => undefined)
    if (!run) return
    ;(this as unknown as { options: { outputFile?: string } }).options.outputFile ??= reportPaths(run.report).junit
    const releases = new Map((await collectRuns(run, await readTally(run))).map((r) => [r.name, r.release]))
    const kernels: { task: RunnerTestFile }[] = []
    // In the run's own order of kernels and specs, not the order they happened to finish in.
    const order = this.vitest.projects.map((p) => p.name)
    const projects = [...byProject].sort(([a], [b]) => order.indexOf(a) - order.indexOf(b))
    for (const [name, unsorted] of projects) {
      const ms = [...unsorted].sort((a, b) => a.moduleId.localeCompare(b.moduleId))
      const kernel = kernelOfProject(run, name)?.name
      const release = releases.get(kernel ?? 'host') ?? [...releases.values()].find(Boolean)
      const label = kernel && release ? `${kernel} (${release})` : (kernel ?? release ?? name)
      // vitest's JUnit reads each module's runner task: so do we.
      const files = ms.map((m) => (m as unknown as { task: RunnerTestFile }).task)
      const tests = files.flatMap((f) => f.tasks.flatMap(flatten).map((t: RunnerTask) => ({ ...t, name: `${specIdOf(f.name)}: ${t.name}` })))
      const duration = files.reduce((s, f) => s + (f.result?.duration ?? 0), 0)
      const failed = files.some((f) => f.result?.state === 'fail')
      kernels.push({ task: { ...files[0]!, name: label, filepath: join(this.vitest.config.root, label), tasks: tests, result: { ...files[0]!.result, state: failed ? 'fail' : 'pass', duration } } as RunnerTestFile })
    }
    await super.onInit(this.vitest)
    await super.onTestRunEnd(kernels as unknown as TestModule[])
  }
}
