/**
 * Forks started ahead (src/vitest/forks.ts), against the vitest installed here: its pool takes them when
 * they were started as vitest starts its own, forks anew when they were not, and no fork outlives the run.
 */
import { describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { startChild } from '../../helpers/child.js'
import { projectRoot } from '../../../src/util/paths.js'
import { timeoutScale } from '../../../src/util/timeout-scale.js'

/** Each test starts vitest in a child of its own: ~3 s here, ~30 s in an emulated box (OOMLAB_TIMEOUT_SCALE). */
const TIMEOUT_MS = 30_000 * timeoutScale()

interface Outcome {
  taken: number
  forked: number
  passed: boolean
  pids: number[]
}

async function run(...args: string[]): Promise<Outcome> {
  const child = startChild(process.execPath, ['--import', 'tsx', join(projectRoot, 'test/unit/vitest/forks-child.ts'), ...args], { cwd: projectRoot })
  const ended = await child.closed
  expect(ended, `forks-child.ts ${args.join(' ')}: ${child.stderr()}`).toEqual({ code: 0, signal: null })
  return JSON.parse(child.lines.at(-1)!) as Outcome
}

describe('vitest forks started ahead', () => {
  it('are taken by the pool: it forks none itself, and the spec passes in the fork it took', async () => {
    const o = await run()
    expect(o).toMatchObject({ taken: 1, forked: 0, passed: true })
    // The second fork, never taken, was stopped with the run.
    expect(o.pids.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([])
  }, TIMEOUT_MS)

  it('are not taken once the environment vitest gives its forks differs: the pool forks anew', async () => {
    const o = await run('--change-env')
    expect(o).toMatchObject({ taken: 0, forked: 1, passed: true })
    expect(o.pids.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([])
  }, TIMEOUT_MS)
})
