/**
 * The vitest fixtures: `machine`, the Os an experiment acts on (this host, or a pristine guest), and
 * `lab`, a fresh Lab on it. Both are always disposed of; the evidence is written with the test's verdict.
 */
import { test as base, expect, vi } from 'vitest'
import { join } from 'node:path'
import { mkdirSync, writeFileSync } from 'node:fs'
import { Unsupported } from '../util/errors.js'
import { Lab } from './lab.js'
import { openMachine, machineProvided } from './machine.js'
import { timeouts } from './timeouts.js'
import { userReports } from '../util/paths.js'
import { specIdOf } from '../report/paths.js'
import type { Os, OsFacts } from '../os/os.js'
import type { Evidence } from '../report/evidence.js'
import './matchers.js'

// Under plain `vitest` (no oomlab config), an experiment still gets its deadline, not vitest's 5 s default.
if (!machineProvided()) vi.setConfig({ testTimeout: timeouts.testMs, hookTimeout: timeouts.testMs })

export function evidenceDir(): string {
  return process.env.OOMLAB_EVIDENCE_DIR ?? join(userReports('latest'), 'evidence')
}

function writeEvidence(id: string, evidence: Evidence): void {
  mkdirSync(evidenceDir(), { recursive: true })
  writeFileSync(join(evidenceDir(), `${id}.json`), `${JSON.stringify(evidence, null, 2)}\n`)
}

/**
 * A kernel without what the scenario needs gets "unsupported: <reason>" in its evidence and the
 * test is skipped with that reason: neither a pass nor a silent skip.
 */
function unsupported(id: string, scenario: string, facts: OsFacts, reason: string, skip: (note: string) => never): never {
  writeEvidence(id, {
    scenario,
    kernel: { release: facts.release, version: facts.version },
    durationMs: 0,
    verdict: { state: 'unsupported', errors: [reason] },
    root: '',
    capabilities: {},
    tree: [],
    processes: [],
    oomEvents: [],
    kernelLog: [],
    notes: [],
  })
  skip(`unsupported: ${reason}`)
}

export const experiment = base.extend<{ machine: Os; lab: Lab }>({
  machine: async ({ task, signal }, use) => {
    const os = await openMachine({ label: task.name, signal })
    try {
      await use(os)
    } finally {
      await os.dispose()
    }
  },
  lab: async ({ task, machine, onTestFinished, skip }, use) => {
    const id = specIdOf(task.file.name)
    const cgroupParent = machine.name === 'local' ? process.env.OOMLAB_CGROUP_PARENT || undefined : undefined
    const lab = await Lab.open(task.name, { os: machine, ...(cgroupParent && { cgroupParent }), onUnsupported: (reason) => skip(`unsupported: ${reason}`) }).catch(async (err: unknown) => {
      if (err instanceof Unsupported) unsupported(id, task.name, await machine.facts(), err.message, skip)
      throw err
    })
    let evidence: Promise<Evidence> | undefined
    // The evidence is read before teardown (while the tree exists) and written once the verdict is known.
    onTestFinished(async ({ task: t }) => {
      const state = t.result?.state ?? 'unknown'
      const errors = t.result?.errors?.map((e) => e.message.split('\n')[0] ?? '') ?? []
      const e = await (evidence ?? lab.evidence({ state }))
      // The guest's console is evidence only when something went wrong.
      if (state === 'pass' && e.machine) delete e.machine.console
      writeEvidence(id, { ...e, verdict: { state, errors } })
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
