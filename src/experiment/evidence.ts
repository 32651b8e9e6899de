/** An experiment's evidence, in the one schema of src/report/evidence.ts, built from plain data. */
import { parseMemoryEvents } from '../cgroup/memory-events.js'
import { formatRecord, type KmsgRecord } from '../kmsg/record.js'
import type { OomEvent } from '../kmsg/oom.js'
import type { Evidence } from '../report/evidence.js'
import { expectedCapabilities } from '../kernel/capabilities.js'
import type { Fate } from './fates.js'
import type { MachineStats, OsFacts } from '../os/os.js'
import type { KillDetection, Step } from './clock.js'

const MAX_RECORDS = 5000

/** What an experiment saw, as data: no machine is touched to build its evidence. */
export interface Observed {
  scenario: string
  /** The machine's facts when the experiment began. */
  facts: OsFacts
  machine: MachineStats
  startedAt: Date
  /** The kernel's path of the tree's root cgroup. */
  root: string
  capabilities: Record<string, boolean>
  cgroups: readonly { name: string; kernelPath: string; settings: Record<string, string>; eventsTextAtStart: string | undefined }[]
  notes: readonly string[]
  steps: readonly Step[]
  /** The kernel log since the experiment began, and the OOM killer's runs in the tree. */
  records: readonly KmsgRecord[]
  events: readonly OomEvent[]
}

export function buildEvidence(o: {
  observed: Observed
  verdict: { state: string; errors?: string[] }
  fates: Fate[]
  /** memory.events of each cgroup now, in order. */
  eventsAfter: (string | undefined)[]
  shellOutput: string | undefined
  killDetection: KillDetection | undefined
  /** The machine's facts at the end: what the experiment cost it. */
  factsAfter?: OsFacts | undefined
}): Evidence {
  const { observed: x } = o
  return {
    scenario: x.scenario,
    kernel: { release: x.facts.release, version: x.facts.version, ...(x.facts.cgroup2 && { cgroup2Options: x.facts.cgroup2.options }) },
    machine: { ...x.machine, ...(o.factsAfter && { cpu: { serverMs: o.factsAfter.cpu.serverMs - x.facts.cpu.serverMs, machineBusyMs: o.factsAfter.cpu.machineBusyMs - x.facts.cpu.machineBusyMs } }) },
    startedAt: x.startedAt.toISOString(),
    durationMs: Date.now() - x.startedAt.getTime(),
    verdict: o.verdict,
    root: x.root,
    capabilities: { ...x.capabilities },
    capabilitiesExpected: expectedCapabilities(x.facts.release),
    tree: x.cgroups.map((cg, i) => {
      const after = o.eventsAfter[i]
      return {
        name: cg.name,
        kernelPath: cg.kernelPath,
        settings: cg.settings,
        ...(cg.eventsTextAtStart !== undefined && { memoryEventsBefore: parseMemoryEvents(cg.eventsTextAtStart) }),
        ...(after !== undefined && { memoryEventsAfter: parseMemoryEvents(after) }),
        memoryEventsText: { ...(cg.eventsTextAtStart !== undefined && { before: cg.eventsTextAtStart }), ...(after !== undefined && { after }) },
      }
    }),
    processes: o.fates.map((f) => ({
      role: f.member.role,
      pid: f.member.pid,
      cgroup: f.member.cgroup,
      comm: f.member.comm,
      ...(f.member.uid !== undefined && { uid: f.member.uid }),
      ...(f.member.oomScoreAdj !== undefined && { oomScoreAdj: f.member.oomScoreAdj }),
      fate: f.alive ? 'survived' : f.killRecord ? 'killed' : 'died',
      liveness: f.liveness,
      inCgroupAfter: f.inCgroup,
      kernelRecord: f.killRecord ?? f.exitingRecord ?? null,
      ...(f.cause !== undefined && { cause: f.cause }),
    })),
    oomEvents: x.events.map((e) => ({
      ...(e.oomMemcg !== undefined && { oomMemcg: e.oomMemcg }),
      ...(e.taskMemcg !== undefined && { taskMemcg: e.taskMemcg }),
      ...(e.victim !== undefined && { victim: e.victim }),
      groupKill: e.groupKill ?? null,
      killed: e.killed.map((k) => ({ pid: k.pid, comm: k.comm, ...(k.uid !== undefined && { uid: k.uid }), ...(k.oomScoreAdj !== undefined && { oomScoreAdj: k.oomScoreAdj }) })),
    })),
    kernelLog: x.events.flatMap((e) => e.records.map(formatRecord)),
    kernelRecords: x.records.slice(-MAX_RECORDS),
    kernelRecordsDropped: Math.max(0, x.records.length - MAX_RECORDS),
    ...(o.shellOutput !== undefined && { shellOutput: o.shellOutput.slice(-8000) }),
    notes: [...x.notes],
    timeline: x.steps.map((t) => ({ step: t.step, ms: Math.round(t.atUs / 100) / 10 })),
    killDetection: o.killDetection ?? null,
  }
}
