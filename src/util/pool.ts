/** Runs `fn` on each item, `jobs` at a time, in the list's order; results in the same order. */
export async function bounded<T, R>(items: readonly T[], jobs: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(Math.max(1, jobs), items.length) }, worker))
  return results
}
