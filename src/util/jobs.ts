import { availableParallelism } from 'node:os'

/** Experiments at once: each acts on a guest of its own, one per core (OOMLAB_JOBS to change). */
export function experimentJobs(env: NodeJS.ProcessEnv = process.env): number {
  return Number(env.OOMLAB_JOBS) || availableParallelism()
}
