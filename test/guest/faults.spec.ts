/**
 * Fault tests that need a kernel of their own: run in the guest by `oomlab soak`. A run of the
 * article's scenario 2 (article-child) is interrupted with SIGINT or SIGTERM at each stage, killed
 * with SIGKILL, or run twice at once; afterwards nothing of it may be left.
 */
import { describe, it, expect } from 'vitest'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitForKey } from '../../src/cgroup/wait.js'

const CHILD = new URL('./article-child.mjs', import.meta.url).pathname
const CGROUP = '/sys/fs/cgroup'

interface Child {
  lines: string[]
  stderr: string[]
  pid: number
  /** Resolves with the line that matches `re` (already printed or still to come). */
  line(re: RegExp): Promise<string>
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill(sig: NodeJS.Signals): void
}

function startChild(): Child {
  const p = spawn(process.execPath, [CHILD], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  const stderr: string[] = []
  const waiters = new Set<() => void>()
  let partial = ''
  p.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop() ?? ''
    lines.push(...parts)
    for (const w of [...waiters]) w()
  })
  p.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    lines,
    stderr,
    pid: p.pid!,
    exit,
    kill: (sig) => p.kill(sig),
    line: (re) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const l = lines.find((x) => re.test(x))
          if (l !== undefined) {
            waiters.delete(check)
            resolve(l)
          }
        }
        void exit.then(() => {
          check()
          if (waiters.has(check)) reject(new Error(`the child ended without printing ${re}; it said: ${lines.join(' | ')} ${stderr.join('')}`))
        })
        waiters.add(check)
        check()
      }),
  }
}

/** What a run may leave behind: its cgroups, its workload (uid 1000), its kmsg reader, its temp dir. */
function leftovers(): string[] {
  const found: string[] = []
  for (const d of readdirSync(CGROUP)) if (d.startsWith('oomlab-')) found.push(`cgroup ${d}`)
  for (const f of readdirSync(tmpdir())) if (f.startsWith('oomlab-work-')) found.push(`temp dir ${f}`)
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && !before.has(p))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      if (/^State:\s+Z/m.test(status)) continue
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()
      if (/^Uid:\s+1000\b/m.test(status) || cmd === 'cat /dev/kmsg' || cmd.includes('article-child')) found.push(`process ${pid} (${cmd})`)
    } catch {
      /* gone meanwhile */
    }
  }
  return found
}

/** The machine's own processes before any run (a restored runner guest's agent follows the kernel log too). */
const before = new Set(readdirSync('/proc').filter((p) => /^\d+$/.test(p)))

const jitter = () => new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)))

type Stage = 'setup' | 'pushing' | 'kill' | 'teardown'
const TRIALS: [NodeJS.Signals, Stage, number][] = []
for (const sig of ['SIGINT', 'SIGTERM'] as const) for (const stage of ['setup', 'pushing', 'kill', 'teardown'] as const) for (const n of [1, 2, 3]) TRIALS.push([sig, stage, n])

describe('interrupted runs leave nothing behind', () => {
  it.each(TRIALS)('%s during %s (trial %i)', { timeout: 120_000 }, async (sig, stage) => {
    expect(leftovers()).toEqual([])
    const child = startChild()
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
    const end = await child.exit
    // It died of the signal (re-raised after its teardown); in teardown it may have finished just before.
    const finished = stage === 'teardown' && end.code === 0 && child.lines.includes('done')
    expect(end.signal === sig || finished, `exit ${JSON.stringify(end)}; ${child.stderr.join('')}`).toBe(true)
    expect(existsSync(tree)).toBe(false)
    expect(leftovers()).toEqual([])
  })
})

describe('a run killed with SIGKILL', () => {
  it('is cleaned up by the next run, which says so', { timeout: 180_000 }, async () => {
    const first = startChild()
    const tree = (await first.line(/^tree /)).slice(5)
    await first.line(/^phase pushing$/)
    first.kill('SIGKILL')
    await first.exit
    expect(existsSync(tree)).toBe(true) // no chance to clean up

    const next = startChild()
    await next.line(/^tree /)
    const said = next.stderr.join('')
    expect(said).toContain(`removed stale cgroup tree ${tree} left by an interrupted run`)
    expect(said).toMatch(/removed stale temp dir .*oomlab-work-/)
    expect(existsSync(tree)).toBe(false)
    await next.exit
    expect(leftovers()).toEqual([])
  })
})

describe('two runs at once', () => {
  it('see and touch only their own cgroups and kernel records', { timeout: 180_000 }, async () => {
    const runs = [startChild(), startChild()]
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
