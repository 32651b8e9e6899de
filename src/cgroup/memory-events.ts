/** memory.events (Documentation/admin-guide/cgroup-v2.rst). A key the kernel lacks is absent, never 0. */
import { parseKeyed } from './cgroupfs.js'

/** Keys documented so far: oom_group_kill came in 5.17, sock_throttled in 6.x. */
export const MEMORY_EVENT_KEYS = ['low', 'high', 'max', 'oom', 'oom_kill', 'oom_group_kill', 'sock_throttled'] as const
export type MemoryEventKey = (typeof MEMORY_EVENT_KEYS)[number]

export type MemoryEvents = Partial<Record<MemoryEventKey, number>> & Record<string, number>

export function parseMemoryEvents(text: string): MemoryEvents {
  return Object.fromEntries(parseKeyed(text)) as MemoryEvents
}

/** How far a counter moved; undefined when the kernel does not expose it. */
export function delta(before: MemoryEvents, after: MemoryEvents, key: MemoryEventKey): number | undefined {
  const a = after[key]
  const b = before[key]
  return a === undefined || b === undefined ? undefined : a - b
}
