/**
 * Fault tests that need a kernel of their own: run in the guest by `oomlab soak`. A run of the
 * article's scenario 2 (article-child) is interrupted with SIGINT or SIGTERM at each stage, killed
 * with SIGKILL, or run twice at once; afterwards nothing of it may be left.
 */
import { describe, it, expect } from 'vitest'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { waitForKey } from '../../src/cgroup/wait.js'
import { startChild } from '../helpers/child.js'
import { leftovers as leftoversOf, processesNow } from '../helpers/leftovers.js'

const CHILD = new URL('./article-child.mjs', import.meta.url).pathname

const startArticle = () => startChild(process.execPath, [CHILD])

/** What a run may leave behind: its cgroups, its workload (uid 1000), its kmsg reader, its temp dir. */
const leftovers = () => leftoversOf({ before, temp: /^oomlab-work-/, ours: (cmd) => cmd === 'cat /dev/kmsg' || cmd.includes('article-child') })

/** The machine's own processes before any run (a restored runner guest's agent follows the kernel log too). */
const before = processesNow()

const jitter = () => new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)))

type Stage = 'setup' | 'pushing' | 'kill' | 'teardown'
const TRIALS: [NodeJS.Signals, Stage, number][] = []
for (const sig of ['SIGINT', 'SIGTERM'] as const) for (const stage of ['setup', 'pushing', 'kill', 'teardown'] as const) for (const n of [1, 2, 3]) TRIALS.push([sig, stage, n])

describe('interrupted runs leave nothing behind', () => {
  it.each(TRIALS)('%s during %s (trial %i)', { timeout: 120_000 }, async (sig, stage) => {
    expect(leftovers()).toEqual([])
    const child = startArticle()
    const tree = (await child.line(/^tree /)).slice(5)
    if (stage === 'kill') {
      // The moment the kernel counts the OOM kill: the group kill is under way.
      await child.line(/^phase pushing$/)
      await waitForKey(join(tree, 'test01/test011'), 'memory.events', 'oom_kill', (n) => n >= 1, 'oom_kill >= 1', { timeoutMs: 60_000 })
    } else {
      await child.line(new RegExp(`^phase ${stage}$`))
      if (stage !== 'teardown') await jitter()
    }
    child.kill(sig)
    const end = await child.closed
    // It died of the signal (re-raised after its teardown); in teardown it may have finished just before.
    const finished = stage === 'teardown' && end.code === 0 && child.lines.includes('done')
    expect(end.signal === sig || finished, `exit ${JSON.stringify(end)}; ${child.stderr()}`).toBe(true)
    expect(existsSync(tree)).toBe(false)
    expect(leftovers()).toEqual([])
  })
})

describe('a run killed with SIGKILL', () => {
  it('is cleaned up by the next run, which says so', { timeout: 180_000 }, async () => {
    const first = startArticle()
    const tree = (await first.line(/^tree /)).slice(5)
    await first.line(/^phase pushing$/)
    first.kill('SIGKILL')
    await first.exit
    expect(existsSync(tree)).toBe(true) // no chance to clean up

    const next = startArticle()
    await next.line(/^tree /)
    const said = next.stderr()
    expect(said).toContain(`removed stale cgroup tree ${tree} left by an interrupted run`)
    expect(said).toMatch(/removed stale temp dir .*oomlab-work-/)
    expect(existsSync(tree)).toBe(false)
    await next.exit
    expect(leftovers()).toEqual([])
  })
})

describe('two runs at once', () => {
  it('see and touch only their own cgroups and kernel records', { timeout: 180_000 }, async () => {
    const runs = [startArticle(), startArticle()]
    const results = await Promise.all(runs.map(async (c) => JSON.parse((await c.line(/^result /)).slice(7)) as { root: string; members: number[]; events: { oomMemcg: string; groupKill: string; killed: number[] }[] }))
    await Promise.all(runs.map((c) => c.exit))
    const [a, b] = results as [(typeof results)[0], (typeof results)[0]]
    expect(a.root).not.toBe(b.root)
    for (const [own, other] of [[a, b], [b, a]] as const) {
      expect(own.events.length).toBeGreaterThanOrEqual(1)
      for (const e of own.events) {
        expect(e.oomMemcg.startsWith(`${own.root}/`)).toBe(true)
        expect(e.groupKill.startsWith(`${own.root}/`)).toBe(true)
        for (const pid of e.killed) expect(other.members).not.toContain(pid)
      }
    }
    expect(leftovers()).toEqual([])
  })
})
