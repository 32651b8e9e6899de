/**
 * The CLI as a CI runner with cgroup v2 runs it: the npm package installed in /oomlab/node_modules,
 * `oomlab reproduce --native 02-` as root. Interrupted with SIGINT or SIGTERM at each stage of the run,
 * killed with SIGKILL and cleaned up by the next run, two runs at once; afterwards nothing of it may be
 * left. Runs inside the restored runner guest (`oomlab soak`, run-faults.ts).
 */
import { describe, it, expect } from 'vitest'
import { existsSync, mkdtempSync, readdirSync, readFileSync, watch } from 'node:fs'
import { dirname, join } from 'node:path'
import { tmpdir } from 'node:os'
import { waitForKey } from '../../src/cgroup/wait.js'
import { startChild, type Child } from '../helpers/child.js'
import { leftovers as leftoversOf, processesNow } from '../helpers/leftovers.js'

const CLI = '/oomlab/node_modules/oom-group-lab/bin/oomlab.mjs'
const CGROUP = '/sys/fs/cgroup'

/** A run of the installed CLI, and its report folder. */
function startCli(): Child & { report: string } {
  const report = mkdtempSync(join(tmpdir(), 'cli-report-'))
  return Object.assign(startChild(process.execPath, [CLI, 'reproduce', '--native', '02-', '--report', report]), { report })
}

/** Resolves once `path` exists: watches the deepest folder that does (mkdir on cgroupfs raises inotify events). */
function pathExists(path: string, timeoutMs = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let watcher: ReturnType<typeof watch> | undefined
    const timer = setTimeout(() => {
      watcher?.close()
      reject(new Error(`${path} did not appear within ${timeoutMs / 1000} s`))
    }, timeoutMs)
    const arm = () => {
      watcher?.close()
      if (existsSync(path)) {
        clearTimeout(timer)
        return resolve()
      }
      let dir = dirname(path)
      while (!existsSync(dir)) dir = dirname(dir)
      watcher = watch(dir, arm)
      if (existsSync(path)) arm() // made between the check and the watch
    }
    arm()
  })
}

/** An experiment's tree, `oomlab-<pid>-<start>-...`; not the preflight's `oomlab-probe-<pid>`. */
const TREE = /^oomlab-\d+-/

/** The tree a run creates: the first experiment tree that was not there before. */
function newTree(before: Set<string>, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const find = () => readdirSync(CGROUP).find((d) => TREE.test(d) && !before.has(d))
    const timer = setTimeout(() => {
      w.close()
      reject(new Error(`no new oomlab-* cgroup within ${timeoutMs / 1000} s`))
    }, timeoutMs)
    const check = () => {
      const d = find()
      if (d === undefined) return
      clearTimeout(timer)
      w.close()
      resolve(join(CGROUP, d))
    }
    const w = watch(CGROUP, check)
    check()
  })
}

const treesNow = () => new Set(readdirSync(CGROUP).filter((d) => d.startsWith('oomlab-')))

/** What a run may leave: its cgroups, its workload (uid 1000), vitest and its workers, its temp dirs. */
const leftovers = () =>
  leftoversOf({ before, temp: /^oomlab-(work|vitest|prepared)-/, ours: (cmd) => cmd === 'cat /dev/kmsg' || cmd.includes(CLI) || /vitest\.mjs|node_modules\/(vitest|tinypool)/.test(cmd) })

/** The machine's own processes before any run (the agent, its kernel-log reader, vitest running this file). */
const before = processesNow()

type Stage = 'setup' | 'kill' | 'judging'
const TRIALS: [NodeJS.Signals, Stage][] = []
for (const sig of ['SIGINT', 'SIGTERM'] as const) for (const stage of ['setup', 'kill', 'judging'] as const) TRIALS.push([sig, stage])

describe('oomlab reproduce --native, interrupted, leaves nothing behind', () => {
  it.each(TRIALS)('%s during %s', { timeout: 240_000 }, async (sig, stage) => {
    expect(leftovers()).toEqual([])
    const trees = treesNow()
    const run = startCli()
    const tree = await newTree(trees)
    const test011 = join(tree, 'test01/test011')
    if (stage !== 'setup') {
      await pathExists(join(test011, 'memory.events'))
      await waitForKey(test011, 'memory.events', 'oom_kill', (n) => n >= 1, 'oom_kill >= 1', { timeoutMs: 120_000 })
    }
    // After the group kill, while the spec waits for the records and judges.
    if (stage === 'judging') await waitForKey(test011, 'cgroup.events', 'populated', (n) => n === 0, 'populated 0', { timeoutMs: 60_000 })
    run.kill(sig)
    const end = await run.closed
    const said = run.output()
    // Interrupted: 130 and the reason; or, late in judging, it may have finished first.
    expect(end.code === 130 || (stage === 'judging' && end.code === 0), `exit ${JSON.stringify(end)}: ${said.slice(-600)}`).toBe(true)
    if (end.code === 130) expect(said).toMatch(new RegExp(`${sig}: stopping`))
    // Its own worker tore the tree down (the CLI waits for it): nothing was left for the reaper.
    expect(said).not.toMatch(/removed stale cgroup tree/)
    expect(existsSync(tree)).toBe(false)
    expect(leftovers(), said.slice(-800)).toEqual([])
  })
})

describe('oomlab reproduce --native killed with SIGKILL', () => {
  it('leaves nothing once the next run is done (its vitest tears its tree down, or the next run reaps it)', { timeout: 400_000 }, async () => {
    const first = startCli()
    const tree = await newTree(treesNow())
    await pathExists(join(tree, 'test01/test011/memory.events'))
    first.kill('SIGKILL')
    await first.exit
    const next = startCli()
    const end = await next.closed
    const said = next.output()
    expect(end.code, said.slice(-600)).toBe(0)
    // The killed CLI's vitest outlives it and tears its tree down itself; what it could not, the next run reaps.
    expect(existsSync(tree)).toBe(false)
    expect(leftovers()).toEqual([])
  })
})

describe('two oomlab reproduce --native at once', () => {
  it('both pass, each with its own tree', { timeout: 400_000 }, async () => {
    const runs = [startCli(), startCli()]
    const ends = await Promise.all(runs.map((r) => r.closed))
    for (const [i, e] of ends.entries()) expect(e.code, runs[i]!.output().slice(-600)).toBe(0)
    // The kernel's own path of each run's group kill: the same names (test01/test011) under two trees.
    const groupKills = runs.map((r) => (JSON.parse(readFileSync(join(r.report, 'evidence', '02-leaf-oom-group-1.json'), 'utf8')) as { oomEvents: { groupKill: string | null }[] }).oomEvents[0]?.groupKill)
    expect(groupKills[0]).toMatch(/^\/oomlab-.*\/test01\/test011$/)
    expect(groupKills[1]).toMatch(/^\/oomlab-.*\/test01\/test011$/)
    expect(groupKills[0]).not.toBe(groupKills[1])
    expect(leftovers()).toEqual([])
  })
})
