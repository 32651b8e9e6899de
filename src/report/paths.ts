/** Every path of a run's report, derived in one place from the run's folder. */
import { join } from 'node:path'

/** An experiments project: `experiments`, or `experiments@<kernel>` in a matrix. */
export const isExperimentsProject = (name: string) => name === 'experiments' || name.startsWith('experiments@')

/** What a spec file is called: `*.spec.ts`, compiled `*.spec.js`, or `*.spec.mts`/`.mjs`. */
export const SPEC_FILE = /\.spec\.m?[jt]s$/

/** A spec's id: "experiments/02-leaf-oom-group-1.spec.ts" -> "02-leaf-oom-group-1". */
export const specIdOf = (path: string) => path.replace(/^.*\//, '').replace(SPEC_FILE, '')

/** A test's name as a file name: lower case, words joined by dashes. */
export const slugOf = (name: string) =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 60) || 'test'

/**
 * A scenario's id, which keys its evidence, figure and row: the spec's id when the file holds one
 * experiment (the article's specs), else the spec's id and the test's name, so two never share a file.
 */
export function scenarioIdOf(specFile: string, testName: string, testsInFile: number): string {
  return testsInFile <= 1 ? specIdOf(specFile) : `${specIdOf(specFile)}--${slugOf(testName)}`
}

/** A kernel's folder name in a matrix's evidence/ (names can be image paths). */
export const kernelDirOf = (kernel: string) => kernel.replace(/[^\w.+-]/g, '_')

export function reportPaths(dir: string) {
  return {
    dir,
    summary: join(dir, 'summary.txt'),
    markdown: join(dir, 'report.md'),
    json: join(dir, 'report.json'),
    junit: join(dir, 'junit.xml'),
    vitestJson: join(dir, 'vitest.json'),
    /** Every test's result as vitest gave it, one JSON line each, written as they finish. */
    results: join(dir, 'results.jsonl'),
    figure: (scenario: string) => join(dir, 'figures', `${scenario}.svg`),
    /** A kernel's evidence folder: one kernel's directly in evidence/, a matrix's one folder per kernel. */
    evidenceDir: (kernel?: string) => (kernel === undefined ? join(dir, 'evidence') : join(dir, 'evidence', kernelDirOf(kernel))),
    evidence: (kernel: string | undefined, scenario: string) => join(kernel === undefined ? join(dir, 'evidence') : join(dir, 'evidence', kernelDirOf(kernel)), `${scenario}.json`),
  }
}
