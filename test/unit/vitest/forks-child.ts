/**
 * A vitest run of one trivial spec in this process, its pool taking forks started ahead (src/vitest/forks.ts).
 * Prints what the pool did as JSON. `--change-env` changes this process's environment after the forks
 * started: they no longer fit and the pool must fork anew. Run by forks.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createVitest } from 'vitest/node'
import { ForksAhead } from '../../../src/vitest/forks.js'

const dir = mkdtempSync(join(tmpdir(), 'oomlab-forks-'))
try {
  writeFileSync(join(dir, 'one.spec.mjs'), "import { test, expect } from 'vitest'\ntest('one', () => expect(process.env.VITEST).toBe('true'))\n")
  using ahead = ForksAhead.start(2)
  const pids = ahead.pids()
  if (process.argv.includes('--change-env')) process.env.OOMLAB_FORKS_TEST = 'changed'
  const vitest = await createVitest('test', { config: false, root: dir, run: true, watch: false, reporters: [{}] }, { test: { include: ['one.spec.mjs'], pool: ahead.pool(), maxWorkers: 1 } })
  await vitest.start()
  const passed = vitest.state.getFiles().every((f) => f.result?.state === 'pass')
  await vitest.close()
  console.log(JSON.stringify({ taken: ahead.taken, forked: ahead.forked, passed, pids }))
} finally {
  rmSync(dir, { recursive: true, force: true })
}
