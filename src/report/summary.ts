/** The verdict of each scenario in the article's terms: cgroup, role, PID, fate, the kernel's record. */
import type { Evidence } from './evidence.js'

/** "[   72.328979] Memory cgroup out of memory: Killed process 142 (stress-ng-vm) total-vm:..." -> the gist. */
export function shortRecord(record: string): string {
  const m = record.match(/^\[\s*([\d.]+)\]\s*(?:.*?: )?(Killed process \d+ \([^)]*\))(?:.*?(UID:\d+))?(?:.*?(oom_score_adj:-?\d+))?/)
  return m ? `[${m[1]}] ${[m[2], m[3], m[4]].filter(Boolean).join(' ')}` : record
}

/** 201326592 -> 192M, as the article writes it. */
function bytes(v: string): string {
  const n = Number(v)
  if (!Number.isFinite(n) || n === 0) return v
  return n % 2 ** 20 === 0 ? `${n / 2 ** 20}M` : v
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length)
}

export function formatScenario(e: Evidence): string {
  const mark = e.verdict.state === 'pass' ? 'PASS' : e.verdict.state === 'fail' ? 'FAIL' : e.verdict.state.toUpperCase()
  const lines = [`${mark}  ${e.file ?? ''}: ${e.scenario}  (kernel ${e.kernel.release})`]
  for (const cg of e.tree) {
    const s = Object.entries(cg.settings)
      .filter(([k]) => k !== 'memory.swap.max')
      .map(([k, v]) => `${k}=${k === 'memory.max' ? bytes(v) : v}`)
      .join(' ')
    if (s) lines.push(`      ${cg.name}: ${s}`)
  }
  const w = { cg: Math.max(6, ...e.processes.map((p) => p.cgroup.length)), role: Math.max(4, ...e.processes.map((p) => p.role.length)) }
  lines.push(`      ${pad('cgroup', w.cg)}  ${pad('role', w.role)}  ${pad('pid', 6)}  ${pad('fate', 8)}  kernel record`)
  for (const p of e.processes)
    lines.push(`      ${pad(p.cgroup, w.cg)}  ${pad(p.role, w.role)}  ${pad(String(p.pid), 6)}  ${pad(p.fate, 8)}  ${p.kernelRecord ? shortRecord(p.kernelRecord) : '-'}`)
  const groups = e.oomEvents.map((o) => o.groupKill).filter(Boolean)
  lines.push(`      OOM kills: ${e.oomEvents.length}; group kill: ${groups.length ? [...new Set(groups)].join(', ') : 'none'}`)
  for (const err of e.verdict.errors ?? []) lines.push(`      why it failed: ${err}`)
  for (const n of e.notes) lines.push(`      note: ${n}`)
  return lines.join('\n')
}

export function formatSummary(all: Evidence[]): string {
  return all.map(formatScenario).join('\n\n')
}
