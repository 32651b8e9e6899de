/** Where a run's report and evidence go: OOMLAB_REPORT_DIR, else reports/latest in the project. */
import { join, resolve } from 'node:path'
import { userReports } from '../util/paths.js'

export function reportDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.OOMLAB_REPORT_DIR || userReports('latest'))
}

/** An experiments project: `experiments`, or `experiments@<kernel>` in a matrix. */
export const isExperimentsProject = (name: string) => name === 'experiments' || name.startsWith('experiments@')

/** What a spec file is called: `*.spec.ts`, compiled `*.spec.js`, or `*.spec.mts`/`.mjs`. */
export const SPEC_FILE = /\.spec\.m?[jt]s$/

/** A spec's id, as evidence and reports name it: "experiments/02-leaf-oom-group-1.spec.ts" -> "02-leaf-oom-group-1". */
export const specIdOf = (path: string) => path.replace(/^.*\//, '').replace(SPEC_FILE, '')

/** A kernel's folder of evidence: one kernel's directly in evidence/, a matrix's one folder per kernel. */
export function evidenceDirOf(report: string, kernel?: string): string {
  return kernel === undefined ? join(report, 'evidence') : join(report, 'evidence', kernel.replace(/[^\w.+-]/g, '_'))
}
