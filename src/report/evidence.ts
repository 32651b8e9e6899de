/** The evidence file of one scenario, as the Lab writes it (src/experiment/lab.ts). */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface ProcessEvidence {
  role: string
  pid: number
  cgroup: string
  comm: string
  uid?: number
  oomScoreAdj?: number
  fate: 'survived' | 'killed' | 'died'
  liveness: string
  inCgroupAfter: boolean
  kernelRecord: string | null
}

export interface Evidence {
  scenario: string
  file?: string
  kernel: { release: string; version: string }
  verdict: { state: string; errors?: string[] }
  root: string
  capabilities: Record<string, boolean>
  tree: { name: string; kernelPath: string; settings: Record<string, string>; memoryEventsBefore?: Record<string, number>; memoryEventsAfter?: Record<string, number> }[]
  processes: ProcessEvidence[]
  oomEvents: { oomMemcg?: string; taskMemcg?: string; groupKill: string | null; killed: { pid: number; comm: string }[] }[]
  kernelLog: string[]
  notes: string[]
  durationMs: number
}

export async function readEvidenceDir(dir: string): Promise<Evidence[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.json')).sort()
  const out: Evidence[] = []
  for (const f of names) out.push({ ...(JSON.parse(await readFile(join(dir, f), 'utf8')) as Evidence), file: f.replace(/\.json$/, '') })
  return out
}
