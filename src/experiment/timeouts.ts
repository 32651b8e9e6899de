/** Deadlines for waits on the kernel. Generous: under TCG emulation the guest runs ~10x slower. */
const scale = Number(process.env.OOMLAB_TIMEOUT_SCALE ?? 1)

export const timeouts = {
  /** A process to start and join its cgroup, stress-ng to report its stressor. */
  startMs: 20_000 * scale,
  /** From pushing past the limit to the OOM kill. */
  oomMs: 60_000 * scale,
  /** From the kill to an empty cgroup. */
  killMs: 20_000 * scale,
  /** From a death to its "Killed process" record. */
  recordMs: 5_000 * scale,
}
