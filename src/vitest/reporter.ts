/**
 * oomlab's vitest reporter: appends each experiment's result to the run's results.jsonl as it finishes
 * (what the CLI counts), says how a matrix is getting on, and under plain `vitest` takes the run's report
 * folder and writes the report at the end (under oomlab the CLI does both).
 */
import { appendFileSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Reporter, TestCase, TestModule, TestRunEndReason, TestSpecification, Vitest } from 'vitest/node'
import type { SerializedError } from 'vitest'
import { writeReport, formatTable } from '../report/write.js'
import { isExperimentsProject, reportPaths, scenarioIdOf, specIdOf } from '../report/paths.js'
import type { ResultLine } from '../report/results.js'
import { claimReportDir, defaultReportRoot, pointLatest, runDirOf, type ClaimedFolder } from '../report/folder.js'
import { kernelOfProject, type RunConfig } from '../run/config.js'
import { collectRuns, readTally } from '../run/report.js'
import { currentRun, runStopped } from './context.js'

const firstLine = (e: { message?: string } | SerializedError) => (e.message ?? String(e)).split('\n')[0] ?? ''

export default class OomlabReporter implements Reporter {
  private run: RunConfig | undefined
  private claimed: ClaimedFolder | undefined
  /** Matrix progress: cells (kernel x spec) done of all, one plain line each (a CI log reads it as well as a terminal). */
  private cells = { done: 0, total: 0 }
  private say: (line: string) => void = (line) => void process.stdout.write(`${line}\n`)

  onInit(vitest: Vitest): void {
    this.say = (line) => vitest.logger.log(line)
  }

  private write(line: ResultLine): void {
    // A test cut short by the interrupt did not finish: it counts as not run, as it would had vitest died with it.
    if (!this.run || runStopped()) return
    const path = reportPaths(this.run.report).results
    mkdirSync(dirname(path), { recursive: true })
    // Written at once, whole lines: an interrupt a moment later leaves what finished on disk.
    appendFileSync(path, `${JSON.stringify(line)}\n`)
  }

  async onTestRunStart(specs: ReadonlyArray<TestSpecification>): Promise<void> {
    const ours = specs.filter((s) => isExperimentsProject(s.project.name))
    if (ours.length === 0) return
    // No run could be resolved: the experiments' global setup says why, in one line.
    this.run = await currentRun().catch(() => undefined)
    if (!this.run) return
    if (this.run.by === 'vitest') this.claimed ??= claimReportDir(this.run.report, this.run.id)
    this.cells = { done: 0, total: ours.length }
    this.write({ kind: 'start', run: this.run.id, modules: ours.map((s) => ({ project: s.project.name, file: s.moduleId })) })
  }

  onTestCaseResult(tc: TestCase): void {
    if (!this.run || !isExperimentsProject(tc.project.name)) return
    const r = tc.result()
    const tests = [...tc.module.children.allTests()].length
    this.write({
      kind: 'test',
      run: this.run.id,
      project: tc.project.name,
      file: tc.module.moduleId,
      name: tc.name,
      scenario: scenarioIdOf(tc.module.moduleId, tc.name, tests),
      state: r.state,
      errors: (r.errors ?? []).map(firstLine),
      ...(r.state === 'skipped' && r.note !== undefined && { note: r.note }),
    })
  }

  onTestModuleEnd(m: TestModule): void {
    if (!this.run || !isExperimentsProject(m.project.name)) return
    this.write({ kind: 'module', run: this.run.id, project: m.project.name, file: m.moduleId, state: m.state(), errors: m.errors().map(firstLine) })
    this.cells.done++
    if (this.run.kernels.length < 2) return
    const kernel = kernelOfProject(this.run, m.project.name)?.name ?? m.project.name
    this.say(`oomlab: matrix: ${this.cells.done} of ${this.cells.total} cells done (${kernel} ${specIdOf(m.moduleId)}: ${m.state()})`)
  }

  async onTestRunEnd(_modules: ReadonlyArray<TestModule>, _errors: ReadonlyArray<SerializedError>, reason: TestRunEndReason): Promise<void> {
    const run = this.run
    if (!run) return
    this.write({ kind: 'end', run: run.id, reason })
    if (run.by !== 'vitest') return
    const runs = await collectRuns(run, await readTally(run))
    await writeReport(run.report, runs)
    if (runs.length > 1) process.stdout.write(`\n${formatTable(runs)}\n`)
    this.claimed?.finish()
    this.claimed?.[Symbol.dispose]()
    // The default folder of a run is one of reports/runs/: `latest` now points at it.
    const root = defaultReportRoot()
    if (run.report === runDirOf(root, run.id) && reason !== 'interrupted') pointLatest(root, run.report)
    process.stdout.write(`\noomlab: report in ${run.report} (summary.txt, report.md, report.json, junit.xml, figures/, evidence/)\n`)
  }
}
