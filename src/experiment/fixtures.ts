/**
 * The vitest fixtures: `machine`, the Os an experiment acts on (this host, or a pristine guest of the
 * image its spec asks for), `lab`, a fresh Lab on it, and `runtime`, containers run by runc, crun or LXC
 * beside the lab. Each is always disposed of; the evidence is written with the test's verdict.
 */
import { test as base, expect, vi } from 'vitest'
import { dirname } from 'node:path'
import { mkdirSync, writeFileSync } from 'node:fs'
import { Unsupported } from '../util/errors.js'
import { Lab } from './lab.js'
import { Runtime } from './runtime.js'
import { specImage } from '../run/images.js'
import { openMachine, machineProvided, nativeCgroupRoot, workerRun } from '../vitest/machine.js'
import { timeouts } from './timeouts.js'
import { reportPaths, scenarioIdOf } from '../report/paths.js'
import type { Os, OsFacts } from '../os/os.js'
import type { Evidence } from '../report/evidence.js'
import './matchers.js'

// Under plain `vitest` (no oomlab config), an experiment still gets its deadline, not vitest's 5 s default.
if (!machineProvided()) vi.setConfig({ testTimeout: timeouts.testMs, hookTimeout: timeouts.testMs })

/** A test's scenario id: its spec's, or its spec's and its own name where the file holds several (report/paths.ts). */
function scenarioOf(task: { name: string; file: { name: string; tasks: unknown[] } }): string {
  const count = (ts: unknown[]): number => ts.reduce<number>((n, t) => n + ((t as { type: string }).type === 'suite' ? count((t as { tasks: unknown[] }).tasks) : 1), 0)
  return scenarioIdOf(task.file.name, task.name, count(task.file.tasks))
}

async function writeEvidence(id: string, evidence: Evidence): Promise<void> {
  const run = await workerRun()
  const path = reportPaths(run.report).evidence(run.evidenceKernel, id)
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, `${JSON.stringify({ run: run.id, ...evidence }, null, 2)}\n`)
}

/**
 * A kernel without what the scenario needs gets "unsupported: <reason>" in its evidence and the
 * test is skipped with that reason: neither a pass nor a silent skip.
 */
async function unsupported(id: string, scenario: string, facts: OsFacts, reason: string, skip: (note: string) => never): Promise<never> {
  await writeEvidence(id, {
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

/** When each experiment asked for its machine: the end of the run's start-up, for the bench. */
const askedAt = new WeakMap<Os, number>()

export const experiment = base.extend<{ machine: Os; lab: Lab; runtime: Runtime }>({
  machine: async ({ task, signal }, use) => {
    const asked = Date.now()
    const image = specImage(task.file.filepath)
    const os = await openMachine({ label: task.name, signal, ...(image !== undefined && { image }) })
    askedAt.set(os, asked)
    try {
      await use(os)
    } finally {
      await os.dispose()
    }
  },
  lab: async ({ task, machine, onTestFinished, skip }, use) => {
    const id = scenarioOf(task)
    const cgroupParent = machine.name === 'local' ? await nativeCgroupRoot() : undefined
    const lab = await Lab.open(task.name, { os: machine, ...(cgroupParent && { cgroupParent }), onUnsupported: (reason) => skip(`unsupported: ${reason}`) }).catch(async (err: unknown) => {
      if (err instanceof Unsupported) await unsupported(id, task.name, await machine.facts(), err.message, skip)
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
      const asked = askedAt.get(machine)
      await writeEvidence(id, { ...e, ...(asked !== undefined && { askedAt: new Date(asked).toISOString() }), verdict: { state, errors } })
    })
    try {
      await use(lab)
    } finally {
      evidence = lab.evidence({ state: 'pending' })
      await evidence.catch(() => undefined)
      await lab.dispose()
    }
    // A skipped test gets no onTestFinished: its evidence is written here.
    if (lab.unsupportedReason !== undefined) await writeEvidence(id, { ...(await evidence), verdict: { state: 'unsupported', errors: [lab.unsupportedReason] } })
  },
  // Torn down before the lab (it depends on it): it reads the lab's evidence, then removes its containers.
  runtime: async ({ lab }, use) => {
    const runtime = await Runtime.open(lab)
    try {
      await use(runtime)
    } finally {
      await runtime.dispose()
    }
  },
})

export { expect }
