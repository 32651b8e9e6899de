/**
 * The exit code `git bisect run` reads, on real runs of `oomlab reproduce --kernel-src . 02-` on Debian's
 * linux-source-6.1 made a git repository (test/fixtures/runs/kernel-src): a commit whose kernel passes
 * (0), the commit that skips the group kill in mm/oom_kill.c (1), one where cgroup.kill was removed (1),
 * and one that does not build (125: skip). The last left no run.json (its guest was never prepared): its
 * configuration is the same command's, on the same tree.
 */
import { describe, it, expect, vi, beforeAll, afterAll } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { projectRoot } from '../../../src/util/paths.js'
import { readRunConfig, type RunConfig } from '../../../src/run/config.js'
import { collectRuns, readTally } from '../../../src/run/report.js'
import { exitCodeOf, notReadyOf, printOutcome } from '../../../src/cli/outcome.js'
import type { RunOutcome } from '../../../src/cli/experiments.js'

const dir = (name: string) => join(projectRoot, 'test/fixtures/runs/kernel-src', name)
const configOf = (name: string): RunConfig => ({ ...readRunConfig(join(dir(name === 'not-built' ? 'passed' : name), 'run.json')), report: dir(name) })

async function exitOf(name: string, failures = new Map<string, string>()): Promise<number> {
  const config = configOf(name)
  const tally = await readTally(config)
  const runs = await collectRuns(config, tally, { failures })
  const o: RunOutcome = { config, tally, runs, failures, interrupted: false }
  return exitCodeOf({ ...printOutcome(o), interrupted: false, notReady: notReadyOf(o) })
}

beforeAll(() => void vi.spyOn(console, 'log').mockImplementation(() => undefined))
afterAll(() => vi.restoreAllMocks())

describe('the exit code of a run on a kernel built from source', () => {
  it('is 0 when the spec passes on the good commit', async () => {
    expect(await exitOf('passed')).toBe(0)
  })

  it('is 1 when the spec fails: the group kill skipped, or a feature its version must have removed', async () => {
    expect(await exitOf('regression')).toBe(1)
    expect(await exitOf('no-cgroup-kill')).toBe(1)
  })

  it('is 125 when the tree did not build, so git bisect skips the commit', async () => {
    const report = JSON.parse(readFileSync(join(dir('not-built'), 'report.json'), 'utf8')) as { runs: { name: string; failure: string }[] }
    const [run] = report.runs
    expect(run!.failure).toMatch(/^make -j 2 bzImage in .* failed \(exit 2\); its log: .*build\.log\nfirst error: .*mm\/oom_kill\.c:1013:75: error: expected declaration specifiers before ‘oops’/)
    expect(await exitOf('not-built', new Map([[run!.name, run!.failure]]))).toBe(125)
  })

  it('is 1, not 125, when a kernel that was built fails beside one that was not (a matrix)', () => {
    expect(exitCodeOf({ failed: 2, unsupported: 0, interrupted: false, notReady: 1 })).toBe(1)
    expect(exitCodeOf({ failed: 1, unsupported: 0, interrupted: true, notReady: 1 })).toBe(130)
  })
})
