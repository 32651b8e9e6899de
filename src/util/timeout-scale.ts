/** OOMLAB_TIMEOUT_SCALE multiplies every deadline (and vitest's test timeout with them). */
export function timeoutScale(value = process.env.OOMLAB_TIMEOUT_SCALE): number {
  if (value === undefined || value === '') return 1
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0 || n > 100) throw new Error(`OOMLAB_TIMEOUT_SCALE=${JSON.stringify(value)}: expected a number above 0, at most 100`)
  return n
}
