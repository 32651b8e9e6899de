/**
 * The experiment's clock: what it did when (this process's CLOCK_MONOTONIC since the Lab opened),
 * and, in a guest, how that clock relates to the machine's and to its kernel log's, which gives the
 * kill-detection latency: from the kernel's last "Killed process" record to the spec knowing the
 * cgroup is empty.
 */
import { clockOffset, monotonicUs, type Marker } from '../kmsg/reader.js'
import { lastEmptied } from '../kmsg/tracefs.js'
import type { KmsgRecord } from '../kmsg/record.js'
import type { Os, OsFacts } from '../os/os.js'

/**
 * From the kernel's timestamp of the last "Killed process" record to the spec knowing a cgroup is
 * empty; with the tracepoint, split into the kernel's part (to the cgroup really emptying) and the
 * harness's (the machine noticing, and the answer reaching the spec).
 */
export interface KillDetection {
  lastKillRecordUs: number
  emptySeenUs: number
  latencyMs: number
  clockUncertaintyUs: number
  kernelMs?: number
  harnessMs?: number
  /** Of the harness's part: the machine noticing (inotify to the agent's read), the rest is the answer's way to the spec. */
  machineMs?: number
}

export interface Step {
  step: string
  /** µs since the timeline began. */
  atUs: number
}

/** What the experiment did when. */
export class Timeline {
  readonly openedUs = monotonicUs()
  readonly steps: Step[] = []

  step(what: string): void {
    this.steps.push({ step: what, atUs: monotonicUs() - this.openedUs })
  }
}

/** The machine's clock minus ours (µs), and how sure (half the round trip). */
export interface ClockRelation {
  offsetUs: number
  uncertaintyUs: number
}

/** From one call's round trip: our clock read before (t0) and after (t1) the machine read its own. */
export function relateClocks(t0: number, t1: number, facts: Pick<OsFacts, 'monotonicUs'>): ClockRelation {
  return { offsetUs: facts.monotonicUs - (t0 + t1) / 2, uncertaintyUs: (t1 - t0) / 2 }
}

/** The bench's kill detection: of a few round trips, the shortest relates the clocks best. */
export async function relateClocksClosely(os: Os, start: ClockRelation, rounds = 5): Promise<ClockRelation> {
  let best = start
  for (let i = 0; i < rounds; i++) {
    const a = monotonicUs()
    const m = await os.clock()
    const b = monotonicUs()
    if ((b - a) / 2 < best.uncertaintyUs) best = { offsetUs: m - (a + b) / 2, uncertaintyUs: (b - a) / 2 }
  }
  return best
}

/**
 * The kill-detection latency on the kernel log's clock, from plain data: the timeline's first
 * "<cgroup> empty" step against the last "Killed process" record. Needs the marker, so only in a guest.
 */
export function killDetectionOf(o: {
  records: readonly KmsgRecord[]
  marker: Marker | undefined
  clock: ClockRelation | undefined
  timeline: Timeline
  cgroups: readonly { name: string; kernelPath: string; emptySeenByMachineUs: number | undefined }[]
  /** The kernel's timestamps (µs) of the tree's "Killed process" records. */
  killsUs: readonly number[]
  /** The populated tracepoint's text, if it ran. */
  trace: string
}): KillDetection | undefined {
  const kmsg = o.marker && clockOffset(o.records, o.marker)
  const empty = o.timeline.steps.find((t) => t.step.endsWith(' empty'))
  if (!kmsg || !o.clock || !empty || o.killsUs.length === 0) return undefined
  const lastKillRecordUs = Math.max(...o.killsUs)
  // Our clock -> the machine's -> its kernel log's.
  const emptySeenUs = o.timeline.openedUs + empty.atUs + o.clock.offsetUs + kmsg.offsetUs
  const cg = o.cgroups.find((c) => empty.step === `${c.name} empty`)
  const emptiedUs = cg && o.trace ? lastEmptied(o.trace, cg.kernelPath) : undefined
  return {
    lastKillRecordUs,
    emptySeenUs: Math.round(emptySeenUs),
    latencyMs: (emptySeenUs - lastKillRecordUs) / 1000,
    clockUncertaintyUs: Math.round(kmsg.uncertaintyUs + o.clock.uncertaintyUs),
    ...(emptiedUs !== undefined && { kernelMs: (emptiedUs - lastKillRecordUs) / 1000, harnessMs: (emptySeenUs - emptiedUs) / 1000 }),
    ...(emptiedUs !== undefined && cg?.emptySeenByMachineUs !== undefined && { machineMs: (cg.emptySeenByMachineUs + kmsg.offsetUs - emptiedUs) / 1000 }),
  }
}
