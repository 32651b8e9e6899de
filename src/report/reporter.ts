/**
 * A vitest reporter that writes the experiments' report (summary.txt, report.md, report.json,
 * junit.xml, figures/) from the evidence the specs left, one column per kernel: the same report for
 * plain `npx vitest` and for the CLI. It clears only what a run of ours made, before the run.
 */
import { rm, rmdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Reporter, TestModule, TestSpecification, Vitest } from 'vitest/node'
import { readEvidenceDir } from './evidence.js'
import { writeReport, formatTable } from './write.js'
import type { KernelRun } from './matrix.js'
import { isExperimentsProject, reportDir, specIdOf } from './paths.js'

/** The report files a run of ours writes: nothing else in the folder is touched. */
const OURS = ['summary.txt', 'report.md', 'report.json', 'junit.xml', 'vitest.json']

export default class OomlabReporter implements Reporter {
  private projects = new Map<string, { kernel: string; evidenceDir: string }>()

  /** Matrix progress: cells (kernel x spec) done of all, one plain line each (a CI log reads it as well as a terminal). */
  private cells = { done: 0, total: 0 }

  /** Which projects hold experiments: ours by name, and a user's own config without projects (that named this reporter). */
  private isExperiments = (project: string) => isExperimentsProject(project) || project === ''

  /** vitest's logger: on a terminal its live summary stays at the bottom, below our lines. */
  private say: (line: string) => void = (line) => void process.stdout.write(`${line}\n`)

  onInit(vitest: Vitest): void {
    this.say = (line) => vitest.logger.log(line)
  }

  async onTestRunStart(specs: ReadonlyArray<TestSpecification>): Promise<void> {
    this.projects.clear()
    this.cells = { done: 0, total: specs.filter((s) => this.isExperiments(s.project.name)).length }
    for (const s of specs) {
      const p = s.project
      if (!this.isExperiments(p.name) || this.projects.has(p.name)) continue
      const env = p.config.env ?? {}
      this.projects.set(p.name, { kernel: env.OOMLAB_KERNEL_NAME ?? 'default', evidenceDir: env.OOMLAB_EVIDENCE_DIR ?? join(reportDir(), 'evidence') })
    }
    if (this.projects.size === 0) return
    await clearReport(reportDir())
  }

  onTestModuleEnd(m: TestModule): void {
    if (this.projects.size < 2 || !this.isExperiments(m.project.name)) return
    this.cells.done++
    const kernel = this.projects.get(m.project.name)?.kernel ?? m.project.name
    const spec = specIdOf(m.moduleId)
    this.say(`oomlab: matrix: ${this.cells.done} of ${this.cells.total} cells done (${kernel} ${spec}: ${m.state()})`)
  }

  async onTestRunEnd(_modules: ReadonlyArray<TestModule>): Promise<void> {
    if (this.projects.size === 0) return
    const runs: KernelRun[] = []
    for (const { kernel, evidenceDir } of this.projects.values()) {
      const evidence = await readEvidenceDir(evidenceDir)
      const release = evidence.find((e) => e.kernel.release)?.kernel.release
      runs.push({ name: kernel === 'default' ? (release ?? 'default') : kernel, ...(release !== undefined && { release }), where: evidence.some((e) => e.machine?.kind === 'local') ? 'native' : 'vm', evidence })
    }
    const dir = reportDir()
    await writeReport(dir, runs)
    if (runs.length > 1) process.stdout.write(`\n${formatTable(runs)}\n`)
    // vitest's JUnit and JSON reporters, where named, say their own files.
    process.stdout.write(`\noomlab: report in ${dir} (summary.txt, report.md, report.json, figures/, evidence/)\n`)
  }
}

/** Removes the previous run's report: our files, our figures and evidence, nothing else. */
export async function clearReport(dir: string): Promise<void> {
  for (const f of OURS) await rm(join(dir, f), { force: true })
  for (const sub of ['figures', 'evidence']) {
    const entries = await readdir(join(dir, sub), { recursive: true }).catch(() => [] as string[])
    for (const e of entries.map(String))
      if (/\.(svg|json)$/.test(e)) await rm(join(dir, sub, e), { force: true })
    await rmEmptyDirs(join(dir, sub))
  }
}

async function rmEmptyDirs(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined)
  if (!entries) return
  for (const e of entries) if (e.isDirectory()) await rmEmptyDirs(join(dir, e.name))
  if ((await readdir(dir)).length === 0) await rmdir(dir).catch(() => undefined)
}
