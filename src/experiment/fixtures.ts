/**
 * The vitest fixture that hands each experiment a fresh Lab and always disposes of it, then writes
 * the evidence with the test's verdict.
 */
import { test as base, expect } from 'vitest'
import { join } from 'node:path'
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs'
import { Unsupported } from '../util/errors.js'
import { kernelRelease } from '../proc/procfs.js'
import { Lab, installTeardownHandlers } from './lab.js'
import { projectRoot } from '../util/paths.js'
import './matchers.js'

export function evidenceDir(): string {
  return process.env.OOMLAB_EVIDENCE_DIR ?? join(projectRoot, 'reports', 'latest', 'evidence')
}

function writeEvidence(id: string, evidence: object): void {
  mkdirSync(evidenceDir(), { recursive: true })
  writeFileSync(join(evidenceDir(), `${id}.json`), `${JSON.stringify(evidence, null, 2)}\n`)
}

/**
 * A kernel without what the scenario needs gets "unsupported: <reason>" in its evidence and the
 * test is skipped with that reason: neither a pass nor a silent skip.
 */
function unsupported(id: string, scenario: string, reason: string, skip: (note: string) => never): never {
  writeEvidence(id, {
    scenario,
    kernel: { release: kernelRelease(), version: readFileSync('/proc/version', 'utf8').trim() },
    verdict: { state: 'unsupported', errors: [reason] },
    capabilities: {},
    tree: [],
    processes: [],
    oomEvents: [],
    kernelLog: [],
    notes: [],
  })
  skip(`unsupported: ${reason}`)
}

export const experiment = base.extend<{ lab: Lab }>({
  lab: async ({ task, onTestFinished, skip }, use) => {
    installTeardownHandlers()
    const id = task.file.name.replace(/^.*\//, '').replace(/\.spec\.m?[jt]s$/, '')
    const lab = await Lab.open(task.name, { onUnsupported: (reason) => skip(`unsupported: ${reason}`) }).catch((err: unknown) => {
      if (err instanceof Unsupported) unsupported(id, task.name, err.message, skip)
      throw err
    })
    let evidence: Promise<object> | undefined
    // The evidence is read before teardown (while the tree exists) and written once the verdict is known.
    onTestFinished(async ({ task: t }) => {
      const state = t.result?.state ?? 'unknown'
      const errors = t.result?.errors?.map((e) => e.message.split('\n')[0] ?? '') ?? []
      writeEvidence(id, { ...(await (evidence ?? lab.evidence({ state }))), verdict: { state, errors } })
    })
    try {
      await use(lab)
    } finally {
      evidence = lab.evidence({ state: 'pending' })
      await evidence.catch(() => undefined)
      await lab.dispose()
    }
    // A skipped test gets no onTestFinished: its evidence is written here.
    if (lab.unsupportedReason !== undefined) writeEvidence(id, { ...(await evidence), verdict: { state: 'unsupported', errors: [lab.unsupportedReason] } })
  },
})

export { expect }
