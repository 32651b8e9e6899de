/** Deadlines for waits on the kernel. Generous: under TCG emulation the guest runs ~15x slower. */

/** OOMLAB_TIMEOUT_SCALE multiplies every deadline (and vitest's test timeout with them). */
export function timeoutScale(value = process.env.OOMLAB_TIMEOUT_SCALE): number {
  if (value === undefined || value === '') return 1
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0 || n > 100) throw new Error(`OOMLAB_TIMEOUT_SCALE=${JSON.stringify(value)}: expected a number above 0, at most 100`)
  return n
}

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
