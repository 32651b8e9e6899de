/**
 * Runs the native path's fault tests beside it (this folder, bundled) with vitest, inside a restored
 * guest that is a CI runner with cgroup v2, as root (`oomlab soak`). Arguments: where to write vitest's
 * JSON results, then file filters as vitest's own (e.g. cli-faults). Ends with one line,
 * `oomlab-faults {"passed":N,"failed":N,"skipped":N,"broken":B,"leftovers":[...]}` (broken: vitest itself
 * failed or saw unhandled errors), and exits 1 on any failure or leftover.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startVitest } from 'vitest/node'
import { GUEST_USER } from '../../src/vm/in-guest/layout.js'

const [results, ...filters] = process.argv.slice(2)
if (!results) throw new Error('usage: run-faults.mjs RESULTS.json [FILTER...]')

const WORKLOAD = new Set(['sh', 'sleep', 'nohup', 'stress-ng', 'stress-ng-vm', 'setpriv'])

/**
 * What the tests' teardowns should have removed: their cgroups, any process of the workload user, and
 * any workload program (some tests run it as root) other than the guest's own /init shell.
 */
function findLeftovers(): string[] {
  const found: string[] = []
  for (const d of readdirSync('/sys/fs/cgroup')) if (d.startsWith('oomlab-')) found.push(`cgroup /sys/fs/cgroup/${d}`)
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && p !== '1' && p !== String(process.pid))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      const name = status.match(/^Name:\s+(.*)$/m)?.[1] ?? '?'
      const state = status.match(/^State:\s+(\S)/m)?.[1]
      if (state === 'Z') continue // exited, waiting for /init to reap it
      if (status.match(/^Uid:\s+(\d+)/m)?.[1] === String(GUEST_USER.uid) || WORKLOAD.has(name)) found.push(`process ${pid} (${name})`)
    } catch {
      /* exited meanwhile */
    }
  }
  return found
}

const vitest = await startVitest('test', filters, {
  config: false,
  root: dirname(fileURLToPath(import.meta.url)),
  name: 'faults',
  include: ['*.spec.mjs'],
  watch: false,
  // They look for anything left on the whole machine: one at a time.
  fileParallelism: false,
  maxWorkers: 1,
  isolate: false,
  pool: 'threads',
  testTimeout: 180_000,
  hookTimeout: 180_000,
  // The specs come compiled (src/vm/image/bundle.ts): node imports them, no transform.
  experimental: { viteModuleRunner: false, nodeLoader: false },
  // The JSON results are read back whole by the soak: the console's output is only kept in part.
  reporters: ['default', ['json', { outputFile: results }]],
})
const count = { passed: 0, failed: 0, skipped: 0 }
for (const m of vitest.state.getTestModules())
  for (const t of m.children.allTests()) {
    const s = t.result().state
    if (s === 'passed') count.passed++
    else if (s === 'failed') count.failed++
    else count.skipped++
  }
const broken = Number(process.exitCode ?? 0) !== 0 || vitest.state.getUnhandledErrors().length > 0
await vitest.close()
const leftovers = findLeftovers()
process.stdout.write(`oomlab-faults ${JSON.stringify({ ...count, broken, leftovers })}\n`)
process.exit(count.failed > 0 || broken || count.passed === 0 || leftovers.length > 0 ? 1 : 0)
