/**
 * vitest's configuration of a run. oomlab hands it to the vitest it runs in its own process (configOf,
 * src/vitest/start.ts); plain `vitest` loads this file, and the run is resolved from the environment.
 * Nothing here loads vitest (it would load vite with every oomlab command): types only.
 */
import type { ViteUserConfig } from 'vitest/config'
import { join } from 'node:path'
import { timeouts } from './src/experiment/timeouts.js'
import { timeoutScale } from './src/util/timeout-scale.js'
import { ownModule, cacheDir } from './src/util/paths.js'
import { projectOf, type KernelTarget, type RunConfig } from './src/run/config.js'
import { currentRun } from './src/vitest/context.js'
import type { ForksPool } from './src/vitest/forks.js'

/**
 * The unit tests, and every test file of the harness's own that is not an experiment; their deadlines (vitest's
 * 5 s and 10 s) scaled as the experiments' are, for an emulated machine.
 */
const unit = { test: { name: 'unit', include: ['test/**/*.test.ts'], testTimeout: 5_000 * timeoutScale(), hookTimeout: 10_000 * timeoutScale() } }

/** One project of experiments per kernel of the run (one for the host natively). */
const experiments = (run: RunConfig, kernel: KernelTarget | undefined, pool: ForksPool | 'forks') => ({
  // A spec of one's own imports the package by name; this is the copy that runs it (one Lab, one vitest).
  resolve: { alias: { 'oom-group-lab': ownModule('src/index') } },
  test: {
    name: projectOf(run, kernel),
    include: run.specs.length > 0 ? run.specs : ['experiments/**/*.spec.{ts,js}'],
    // Plain vitest's hands the workers their machine and prepares the guest; oomlab hands them over itself.
    ...(run.by === 'vitest' && { globalSetup: [ownModule('src/vitest/global-setup')] }),
    // Each experiment in a guest of its own: its own kernel, memory and kernel log. Natively they
    // share one kernel, so one at a time (the OOM killer's header lines are rate-limited machine-wide).
    fileParallelism: run.machine.kind === 'guest',
    maxWorkers: run.jobs,
    pool,
    isolate: false,
    // The specs' own waits fail first, with what they expected and saw.
    testTimeout: timeouts.testMs,
    hookTimeout: timeouts.testMs,
  },
})

/** `pool`: oomlab's, which takes forks it started ahead (src/vitest/forks.ts); vitest's own under plain vitest. */
export function configOf(run: RunConfig, pool: ForksPool | 'forks' = 'forks'): ViteUserConfig {
  // Only the kernels whose guest was prepared run; the others keep their column, named as in a full matrix, with the reason.
  const kernels: (KernelTarget | undefined)[] = run.machine.kind === 'guest' ? run.kernels.filter((k) => !run.prepared || run.prepared[k.name]) : [undefined]
  return withProjects([unit, ...kernels.map((k) => experiments(run, k, pool))])
}

function withProjects(projects: object[]): ViteUserConfig {
  return {
    // vite's and vitest's caches in the user's cache folder, not in the project (or an installed package's folder, as root).
    cacheDir: join(cacheDir(), 'vite'),
    test: {
      // Transformed modules kept across runs (in node_modules of this install: another install, with its own
      // lock file, would clear a shared one under a running vitest): each run otherwise transforms every file again.
      experimental: { fsModuleCache: true },
      // vitest adds its GitHub Actions reporter (annotations on the failing spec) only when none is named.
      reporters: ['default', ownModule('src/vitest/reporter'), ownModule('src/vitest/junit'), ...(process.env.GITHUB_ACTIONS === 'true' ? ['github-actions'] : [])],
      projects,
    },
  }
}

/**
 * Plain vitest where the experiments have no machine (natively on a systemd host with no delegated cgroup, say):
 * the unit tests need none and run; the experiments' project, when it is run, fails with the reason in one line
 * (its global setup meets the same one).
 */
const withoutMachine = (): ViteUserConfig =>
  withProjects([unit, { test: { name: 'experiments', include: ['experiments/**/*.spec.{ts,js}'], globalSetup: [ownModule('src/vitest/global-setup')] } }])

export default async (): Promise<ViteUserConfig> => {
  try {
    return configOf(await currentRun())
  } catch (err) {
    if ((err as Error).name === 'UserError') return withoutMachine()
    throw err
  }
}
