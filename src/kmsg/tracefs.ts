/**
 * The kernel's `cgroup:cgroup_notify_populated` tracepoint, with the trace clock set to the kernel
 * log's: when a cgroup really became empty, on the same time line as the "Killed process" records.
 * It splits the kill-detection latency into the kernel's part (the victims' exit) and the harness's
 * (the notification reaching it). Used by `oomlab bench`, in a guest only: tracing is global state of
 * the kernel.
 *
 * The kernel log stamps records with local_clock(), which is sched_clock() plus an offset fixed at boot;
 * the trace clock named "local" is sched_clock() alone. "global" is local_clock() (kept monotonic across
 * CPUs). In a restored bookworm guest, records written between two trace markers came out 21 ms before
 * the first under "local", and between them under "global" and "perf" (test/integration/lab-on-guest.test.ts).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

const TRACEFS = '/sys/kernel/tracing'
const EVENT = `${TRACEFS}/events/cgroup/cgroup_notify_populated/enable`

export class PopulatedTrace {
  private constructor() {}

  /** Starts tracing; undefined when the kernel has no such tracepoint. */
  static start(): PopulatedTrace | undefined {
    try {
      if (!existsSync(`${TRACEFS}/trace`)) execFileSync('mount', ['-t', 'tracefs', 'nodev', TRACEFS])
      if (!existsSync(EVENT)) return undefined
      writeFileSync(`${TRACEFS}/trace_clock`, 'global')
      writeFileSync(`${TRACEFS}/trace`, '')
      writeFileSync(EVENT, '1')
      return new PopulatedTrace()
    } catch {
      return undefined
    }
  }

  /** The trace so far (see lastEmptied). */
  text(): string {
    return readFileSync(`${TRACEFS}/trace`, 'utf8')
  }

  stop(): void {
    writeFileSync(EVENT, '0')
  }
}

/** From trace text, e.g. "sh-1 [001] d..2. 30.251104: cgroup_notify_populated: root=0 id=89 level=3 path=/a/b val=0". */
export function lastEmptied(trace: string, kernelPath: string): number | undefined {
  let at: number | undefined
  for (const m of trace.matchAll(/\s(\d+)\.(\d{6}): cgroup_notify_populated: .* path=(\S+) val=0$/gm))
    if (m[3] === kernelPath) at = Number(m[1]) * 1e6 + Number(m[2])
  return at
}
