/** The verdict of each scenario in the article's terms: cgroup, role, PID, fate, the kernel's record. */
import type { Evidence } from './evidence.js'

/** "[   72.328979] Memory cgroup out of memory: Killed process 142 (stress-ng-vm) total-vm:..." -> the gist. */
export function shortRecord(record: string): string {
  const exiting = record.match(/^\[\s*([\d.]+)\]\s*(?:.*?: )?(OOM victim \d+ \([^)]*\) is already exiting)/)
  if (exiting) return `[${exiting[1]}] ${exiting[2]}`
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

/** A kernel's cgroup path as the tree names it: "/oomlab-1-x/test01/test011" -> "test01/test011". */
const inTree = (root: string, path: string | undefined) => (path === undefined ? '?' : root && path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path)

/** The counters that moved, "oom 0->1, oom_kill 0->7". */
function moved(before: Record<string, number> | undefined, after: Record<string, number> | undefined): string {
  if (!after) return ''
  return Object.entries(after)
    .filter(([k, v]) => (before?.[k] ?? 0) !== v)
    .map(([k, v]) => `${k} ${before?.[k] ?? 0}->${v}`)
    .join(', ')
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
  // The article turns swap off with swapoff; the harness keeps every cgroup off swap instead.
  if (e.tree.length && e.tree.every((cg) => cg.settings['memory.swap.max'] === '0')) lines.push('      every cgroup: memory.swap.max=0 (added by the harness: the article runs with swap off)')
  const w = { cg: Math.max(6, ...e.processes.map((p) => p.cgroup.length)), role: Math.max(4, ...e.processes.map((p) => p.role.length)) }
  lines.push(`      ${pad('cgroup', w.cg)}  ${pad('role', w.role)}  ${pad('pid', 6)}  ${pad('adj', 5)}  ${pad('fate', 8)}  kernel record`)
  for (const p of e.processes)
    lines.push(`      ${pad(p.cgroup, w.cg)}  ${pad(p.role, w.role)}  ${pad(String(p.pid), 6)}  ${pad(p.oomScoreAdj === undefined ? '?' : String(p.oomScoreAdj), 5)}  ${pad(p.fate, 8)}  ${p.kernelRecord ? shortRecord(p.kernelRecord) : (p.cause ?? '-')}`)
  e.oomEvents.forEach((o, i) => {
    const victim = o.victim ? `${o.victim.pid} (${o.victim.comm}${(() => { const adj = o.killed.find((k) => k.pid === o.victim!.pid)?.oomScoreAdj; return adj === undefined ? '' : `, oom_score_adj ${adj}` })()})` : '?'
    lines.push(`      OOM ${i + 1}: limit hit in ${inTree(e.root, o.oomMemcg)}; victim ${victim} in ${inTree(e.root, o.taskMemcg)}; group kill: ${o.groupKill ? inTree(e.root, o.groupKill) : 'none'}`)
  })
  if (e.oomEvents.length === 0) lines.push('      OOM kills: none')
  for (const cg of e.tree) {
    const m = moved(cg.memoryEventsBefore, cg.memoryEventsAfter)
    if (m) lines.push(`      memory.events ${cg.name}: ${m}`)
  }
  for (const err of e.verdict.errors ?? []) lines.push(`      why it failed: ${err}`)
  for (const n of e.notes) lines.push(`      note: ${n}`)
  return lines.join('\n')
}

export function formatSummary(all: Evidence[]): string {
  return all.map(formatScenario).join('\n\n')
}
