import { defineConfig } from 'vitest/config'
import { timeouts } from './src/experiment/timeouts.js'
import { nativeCandidate } from './src/host/preflight.js'
import { reportDir, evidenceDirOf } from './src/report/paths.js'
import { ownModule, cacheDir } from './src/util/paths.js'
import { experimentJobs } from './src/util/jobs.js'
import { join } from 'node:path'

const jobs = experimentJobs()
/** A kernel matrix (`oomlab matrix`): one project of experiments per kernel, in one run. */
const kernels = (process.env.OOMLAB_KERNELS ?? '').split(',').filter(Boolean)
const report = reportDir()
/** Spec files of one's own (`oomlab reproduce ./my-layout.spec.ts`), absolute paths, instead of the article's. */
const ownSpecs = process.env.OOMLAB_SPECS ? (JSON.parse(process.env.OOMLAB_SPECS) as string[]) : undefined

const experiments = (kernel?: string) => ({
  // A spec of one's own imports the package by name; this is the copy that runs it (one Lab, one vitest).
  resolve: { alias: { 'oom-group-lab': ownModule('src/index') } },
  test: {
    name: kernel === undefined ? 'experiments' : `experiments@${kernel}`,
    include: ownSpecs ?? ['experiments/**/*.spec.{ts,js}'],
    // Where they run (this host, or a guest restored per experiment) is decided once per project, here.
    globalSetup: [ownModule('src/experiment/global-setup')],
    env: {
      OOMLAB_EVIDENCE_DIR: kernel === undefined && process.env.OOMLAB_EVIDENCE_DIR ? process.env.OOMLAB_EVIDENCE_DIR : evidenceDirOf(report, kernel),
      ...(kernel !== undefined && { OOMLAB_KERNEL_NAME: kernel, ...(kernel.includes('/') ? { OOMLAB_KERNEL_IMAGE: kernel } : { OOMLAB_KERNEL: kernel }) }),
    },
    // Each experiment in a guest of its own: its own kernel, memory and kernel log. Natively they
    // share one kernel, so one at a time (the OOM killer's header lines are rate-limited machine-wide).
    fileParallelism: !nativeCandidate(),
    maxWorkers: jobs,
    pool: 'forks' as const,
    isolate: false,
    // The specs' own waits fail first, with what they expected and saw.
    testTimeout: timeouts.testMs,
    hookTimeout: timeouts.testMs,
  },
})

export default defineConfig({
  // vite's and vitest's caches in the user's cache folder, not in the project (or an installed package's folder, as root).
  cacheDir: join(cacheDir(), 'vite'),
  test: {
    // Transformed modules kept across runs (in node_modules of this install: another install, with its own
    // lock file, would clear a shared one under a running vitest): each run otherwise transforms every file again.
    experimental: { fsModuleCache: true },
    // vitest adds its GitHub Actions reporter (annotations on the failing spec) only when none is named.
    reporters: ['default', ownModule('src/report/reporter'), ownModule('src/report/junit'), ...(process.env.GITHUB_ACTIONS === 'true' ? ['github-actions'] : [])],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
        },
      },
      ...(kernels.length > 0 ? kernels.map(experiments) : [experiments()]),
    ],
  },
})
