/**
 * Waiting in a test for what sends no event (a process's state in /proc, a file another process writes):
 * look again every `everyMs` until `ok`, and fail after `timeoutMs` saying what did not happen.
 */
export async function until(what: string, ok: () => boolean, o: { timeoutMs?: number; everyMs?: number } = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 5000
  const end = performance.now() + timeoutMs
  while (!ok()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, o.everyMs ?? 20))
  }
}
