/**
 * The evidence file of one scenario: one schema for the Lab that writes it (src/experiment/evidence.ts),
 * the report writers that read it, and the script that turns runs into test fixtures.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { KmsgRecord } from '../kmsg/record.js'
import type { MachineStats } from '../os/os.js'
import type { ContainerView } from '../runtime/oci-container.js'
import type { LxcView } from '../runtime/lxc.js'

/** A container's runtime and what it said of the container (its state, its exit, each command run). */
export type ContainerEvidence = ContainerView | LxcView

export interface ProcessEvidence {
  role: string
  pid: number
  cgroup: string
  comm: string
  uid?: number
  oomScoreAdj?: number
  /** "killed" only with the kernel's word for it; a death without a "Killed process" record is just "died" (its record, if any, says the group kill found it already exiting). */
  fate: 'survived' | 'killed' | 'died'
  liveness: string
  inCgroupAfter: boolean
  kernelRecord: string | null
  /** Why it died, when no "Killed process" record is its own (its PID namespace's init was killed). */
  cause?: string
}

export interface CgroupEvidence {
  name: string
  kernelPath: string
  settings: Record<string, string>
  memoryEventsBefore?: Record<string, number>
  memoryEventsAfter?: Record<string, number>
  /** As the kernel printed them. */
  memoryEventsText?: { before?: string; after?: string }
}

export interface OomEventEvidence {
  oomMemcg?: string
  taskMemcg?: string
  victim?: { pid: number; comm: string }
  groupKill: string | null
  killed: { pid: number; comm: string; uid?: number; oomScoreAdj?: number }[]
}

export interface Evidence {
  /** The run that wrote it (its id): a report reads only its own run's. */
  run?: string
  scenario: string
  /** The spec file's name without .spec.ts, set when read back. */
  file?: string
  kernel: { release: string; version: string; cgroup2Options?: string }
  /** Where it ran, and what reaching it cost. */
  machine?: MachineStats
  startedAt?: string
  /** When the experiment asked for its machine (before its guest was claimed or restored). */
  askedAt?: string
  durationMs: number
  verdict: { state: string; errors?: string[] }
  root: string
  capabilities: Record<string, boolean>
  /** For each capability, whether the kernel's upstream version must have it (src/kernel/capabilities.ts). */
  capabilitiesExpected?: Record<string, boolean>
  tree: CgroupEvidence[]
  processes: ProcessEvidence[]
  oomEvents: OomEventEvidence[]
  /** The OOM killer's lines, as dmesg prints them. */
  kernelLog: string[]
  /** Every record since the cursor, as /dev/kmsg gave it: the raw material behind the verdict. */
  kernelRecords?: KmsgRecord[]
  kernelRecordsDropped?: number
  /** What the article's shell printed: stress-ng's -v output. */
  shellOutput?: string
  notes: string[]
  /** Containers a runtime ran in the experiment (runc, crun, LXC): the runtime's own view beside the kernel's. */
  containers?: ContainerEvidence[]
  timeline?: { step: string; ms: number }[]
  killDetection?: { lastKillRecordUs: number; emptySeenUs: number; latencyMs: number; clockUncertaintyUs: number; kernelMs?: number; harnessMs?: number; machineMs?: number } | null
}

export async function readEvidenceDir(dir: string): Promise<Evidence[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.json')).sort()
  const out: Evidence[] = []
  for (const f of names) out.push({ ...(JSON.parse(await readFile(join(dir, f), 'utf8')) as Evidence), file: f.replace(/\.json$/, '') })
  return out
}
