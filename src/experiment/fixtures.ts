/**
 * The vitest fixture that hands each experiment a fresh Lab and always disposes of it, then writes
 * the evidence with the test's verdict.
 */
import { test as base, expect } from 'vitest'
import { join } from 'node:path'
import { Lab, installTeardownHandlers } from './lab.js'
import { projectRoot } from '../util/paths.js'
import './matchers.js'

export function evidenceDir(): string {
  return process.env.OOMLAB_EVIDENCE_DIR ?? join(projectRoot, 'reports', 'latest', 'evidence')
}

export const experiment = base.extend<{ lab: Lab }>({
  lab: async ({ task, onTestFinished }, use) => {
    installTeardownHandlers()
    const id = task.file.name.replace(/^.*\//, '').replace(/\.spec\.ts$/, '')
    const lab = await Lab.open(task.name)
    let evidence: Promise<object> | undefined
    // The evidence is read before teardown (while the tree exists) and written once the verdict is known.
    onTestFinished(async ({ task: t }) => {
      const state = t.result?.state ?? 'unknown'
      const errors = t.result?.errors?.map((e) => e.message.split('\n')[0] ?? '') ?? []
      const ev = { ...(await (evidence ?? lab.evidence({ state }))), verdict: { state, errors } }
      const { mkdirSync, writeFileSync } = await import('node:fs')
      mkdirSync(evidenceDir(), { recursive: true })
      writeFileSync(join(evidenceDir(), `${id}.json`), `${JSON.stringify(ev, null, 2)}\n`)
    })
    try {
      await use(lab)
    } finally {
      evidence = lab.evidence({ state: 'pending' })
      await evidence.catch(() => undefined)
      await lab.dispose()
    }
  },
})

export { expect }
