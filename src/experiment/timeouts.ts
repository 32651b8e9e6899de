/** Deadlines for waits on the kernel. Generous: under TCG emulation the guest runs ~15x slower. */

import { timeoutScale } from '../util/timeout-scale.js'

export { timeoutScale }

export const experimentTimeouts = (scale: number) => ({
  /** A process to start and join its cgroup, stress-ng to report its stressor. */
  startMs: 20_000 * scale,
  /** From pushing past the limit to the OOM kill. */
  oomMs: 60_000 * scale,
  /** From the kill to an empty cgroup. */
  killMs: 20_000 * scale,
  /** From a death to its "Killed process" record. */
  recordMs: 5_000 * scale,
  /** One whole experiment, for vitest: longer than the sum of the waits above. */
  testMs: 180_000 * scale,
})

export const timeouts = experimentTimeouts(timeoutScale())
