/**
 * In a restored runner guest (a CI runner with cgroup v2, as root): the native path's fault tests of
 * test/guest, run by vitest the way `oomlab soak` used to run them in a booted guest. Ends with one line,
 * `oomlab-faults {"passed":N,"failed":N,"skipped":N,"broken":B,"leftovers":[...]}` (broken: vitest itself
 * failed or saw unhandled errors), and exits 1 on any failure or leftover.
 */
import { startVitest } from 'vitest/node'
import { findLeftovers } from './agent.js'
import { GUEST_BUNDLE, FAULTS_RESULTS } from './layout.js'

// Arguments: file filters, as vitest's own (e.g. cli-faults).
const vitest = await startVitest('test', process.argv.slice(2), {
  config: false,
  root: GUEST_BUNDLE,
  name: 'faults',
  include: ['guest-tests/*.spec.mjs'],
  watch: false,
  // They look for anything left on the whole machine: one at a time.
  fileParallelism: false,
  maxWorkers: 1,
  isolate: false,
  pool: 'threads',
  testTimeout: 180_000,
  hookTimeout: 180_000,
  // The specs come compiled (bundleGuest): node imports them, no transform.
  experimental: { viteModuleRunner: false, nodeLoader: false },
  // The JSON results are read back whole by the soak: the console's output is only kept in part.
  reporters: ['default', ['json', { outputFile: FAULTS_RESULTS }]],
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
