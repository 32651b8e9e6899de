/** A Lab's evidence, in the one schema of src/report/evidence.ts. */
import { parseMemoryEvents } from '../cgroup/memory-events.js'
import { formatRecord } from '../kmsg/record.js'
import type { Evidence } from '../report/evidence.js'
import { expectedCapabilities } from '../kernel/capabilities.js'
import type { Fate } from './fates.js'
import type { OsFacts } from '../os/os.js'
import type { Lab, KillDetection } from './lab.js'

const MAX_RECORDS = 5000

export function buildEvidence(o: {
  lab: Lab
  verdict: { state: string; errors?: string[] }
  fates: Fate[]
  /** memory.events of each of the lab's cgroups now, in order. */
  eventsAfter: (string | undefined)[]
  shellOutput: string | undefined
  killDetection: KillDetection | undefined
  /** The machine's facts at the end: what the experiment cost it. */
  factsAfter?: OsFacts | undefined
}): Evidence {
  const { lab } = o
  const events = lab.oomEvents()
  const records = lab.log.records
  return {
    scenario: lab.scenario,
    kernel: { release: lab.facts.release, version: lab.facts.version, ...(lab.facts.cgroup2 && { cgroup2Options: lab.facts.cgroup2.options }) },
    machine: { ...lab.os.stats(), ...(o.factsAfter && { cpu: { serverMs: o.factsAfter.cpu.serverMs - lab.facts.cpu.serverMs, machineBusyMs: o.factsAfter.cpu.machineBusyMs - lab.facts.cpu.machineBusyMs } }) },
    startedAt: lab.startedAt.toISOString(),
    durationMs: Date.now() - lab.startedAt.getTime(),
    verdict: o.verdict,
    root: lab.root.kernelPath,
    capabilities: { ...lab.capabilities },
    capabilitiesExpected: expectedCapabilities(lab.facts.release),
    tree: lab.cgroups.map((cg, i) => {
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
      kernelRecord: f.killRecord ?? null,
    })),
    oomEvents: events.map((e) => ({
      ...(e.oomMemcg !== undefined && { oomMemcg: e.oomMemcg }),
      ...(e.taskMemcg !== undefined && { taskMemcg: e.taskMemcg }),
      ...(e.victim !== undefined && { victim: e.victim }),
      groupKill: e.groupKill ?? null,
      killed: e.killed.map((k) => ({ pid: k.pid, comm: k.comm, ...(k.uid !== undefined && { uid: k.uid }), ...(k.oomScoreAdj !== undefined && { oomScoreAdj: k.oomScoreAdj }) })),
    })),
    kernelLog: events.flatMap((e) => e.records.map(formatRecord)),
    kernelRecords: records.slice(-MAX_RECORDS),
    kernelRecordsDropped: Math.max(0, records.length - MAX_RECORDS),
    ...(o.shellOutput !== undefined && { shellOutput: o.shellOutput.slice(-8000) }),
    notes: lab.notes,
    timeline: lab.timeline.map((t) => ({ step: t.step, ms: Math.round(t.atUs / 100) / 10 })),
    killDetection: o.killDetection ?? null,
  }
}
