/**
 * The report of a run over one or more kernels, written to a folder (also after a failed run):
 * summary.txt (the terminal table), report.json (everything), report.md (for humans) and
 * figures/<scenario>.svg (the article's figure 1: the tree, its settings, and who survived, per
 * kernel). junit.xml is vitest's JUnit reporter's, one suite per kernel (src/vitest/junit.ts).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cellOf, scenarioIds, kernelLabel, capabilityLines, type KernelRun, type Cell } from './matrix.js'
import { formatScenario, shortRecord } from './summary.js'
import { figure } from './svg.js'

const MARK: Record<Cell['status'], string> = { pass: 'pass', fail: 'FAIL', unsupported: 'unsupported', skipped: 'skipped', 'not run': 'not run' }

export function formatTable(runs: readonly KernelRun[]): string {
  const ids = scenarioIds(runs)
  const heads = runs.map(kernelLabel)
  const w0 = Math.max(8, ...ids.map((i) => i.length))
  const ws = heads.map((h) => Math.max(h.length, 11))
  const row = (first: string, cells: string[]) => [first.padEnd(w0), ...cells.map((c, i) => c.padEnd(ws[i]!))].join('  ').trimEnd()
  const lines = [row('scenario', heads), row('-'.repeat(w0), ws.map((w) => '-'.repeat(w)))]
  for (const id of ids) lines.push(row(id, runs.map((r) => MARK[cellOf(r, id).status])))
  const problems: string[] = []
  for (const r of runs) {
    if (r.failure) problems.push(`  ${kernelLabel(r)}: ${r.failure}`)
    for (const id of ids) {
      const c = cellOf(r, id)
      if (c.status !== 'pass' && !(r.failure && !c.evidence)) problems.push(`  ${id} on ${kernelLabel(r)}: ${c.status === 'unsupported' ? 'unsupported: ' : ''}${c.reason}`)
    }
  }
  if (problems.length) lines.push('', 'not passed:', ...problems)
  const capabilities = runs.flatMap(capabilityLines)
  if (capabilities.length) lines.push('', 'kernel capabilities (probed, against what the upstream version must have):', ...capabilities.map((a) => `  ${a}`))
  return lines.join('\n')
}

export function markdown(runs: readonly KernelRun[]): string {
  const ids = scenarioIds(runs)
  const out = ['# oom-group-lab report', '', `Kernels: ${runs.map(kernelLabel).join(', ')}.`, '', '```', formatTable(runs), '```', '']
  for (const id of ids) {
    const any = runs.map((r) => cellOf(r, id).evidence).find(Boolean)
    out.push(`## ${id}: ${any?.scenario ?? ''}`, '', `![${id}](figures/${id}.svg)`, '')
    if (any) out.push('Setup:', '', ...any.tree.map((c) => `- \`${c.name}\`: ${Object.entries(c.settings).map(([k, v]) => `\`${k}=${v}\``).join(', ') || 'no settings'}`), '')
    for (const r of runs) {
      const c = cellOf(r, id)
      out.push(`### ${kernelLabel(r)}: ${MARK[c.status]}`, '')
      if (c.status !== 'pass') out.push(`Reason: ${c.reason}`, '')
      const e = c.evidence
      if (!e || e.processes.length === 0) continue
      out.push('| cgroup | role | PID | uid | oom_score_adj | fate | kernel record |', '|---|---|---|---|---|---|---|')
      for (const p of e.processes)
        out.push(`| ${p.cgroup} | ${p.role} | ${p.pid} | ${p.uid ?? ''} | ${p.oomScoreAdj ?? ''} | ${p.fate} | ${p.kernelRecord ? `\`${shortRecord(p.kernelRecord)}\`` : (p.cause ?? '')} |`)
      out.push('', '<details><summary>kernel log</summary>', '', '```', ...e.kernelLog, '```', '', '</details>', '')
      for (const n of e.notes) out.push(`- note: ${n}`)
      if (e.notes.length) out.push('')
    }
  }
  return out.join('\n')
}

export async function writeReport(dir: string, runs: readonly KernelRun[]): Promise<void> {
  await mkdir(join(dir, 'figures'), { recursive: true })
  await writeFile(join(dir, 'summary.txt'), `${formatTable(runs)}\n\n${runs.flatMap((r) => r.evidence.map(formatScenario)).join('\n\n')}\n`)
  await writeFile(join(dir, 'report.json'), `${JSON.stringify({ createdAt: new Date().toISOString(), runs }, null, 2)}\n`)
  await writeFile(join(dir, 'report.md'), markdown(runs))
  for (const id of scenarioIds(runs)) await writeFile(join(dir, 'figures', `${id}.svg`), figure(id, runs))
}
