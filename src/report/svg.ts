/**
 * The article's figure 1 for one scenario: the cgroup tree with its settings and the processes in
 * each cgroup, marked survived or killed; one panel per kernel, side by side, so differences show.
 */
import type { Evidence } from './evidence.js'
import { cellOf, kernelLabel, type KernelRun } from './matrix.js'

const LINE = 18
const PANEL_W = 440
const INDENT = 16
const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!)

interface Node {
  name: string
  label: string
  settings: string
  procs: Evidence['processes']
  children: Node[]
}

function tree(e: Evidence): Node {
  const root: Node = { name: '', label: '/ (the run\'s root cgroup)', settings: '', procs: [], children: [] }
  const byName = new Map<string, Node>([['', root]])
  for (const c of e.tree) {
    const parent = byName.get(c.name.includes('/') ? c.name.slice(0, c.name.lastIndexOf('/')) : '') ?? root
    const settings = Object.entries(c.settings)
      .filter(([k]) => k === 'memory.max' || k === 'memory.oom.group')
      .map(([k, v]) => `${k.replace('memory.', '')}=${k === 'memory.max' && Number(v) % 2 ** 20 === 0 ? `${Number(v) / 2 ** 20}M` : v}`)
      .join(' ')
    const node: Node = { name: c.name, label: c.name.split('/').pop()!, settings, procs: e.processes.filter((p) => p.cgroup === c.name), children: [] }
    parent.children.push(node)
    byName.set(c.name, node)
  }
  return root
}

const height = (n: Node): number => LINE * (1 + n.procs.length) + n.children.reduce((h, c) => h + height(c) + 6, 0) + 6

function drawNode(n: Node, x: number, y: number, w: number, out: string[]): number {
  const h = height(n)
  out.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" rx="6" fill="${n.name ? '#f4f6fb' : '#ffffff'}" stroke="#8a94a6"/>`)
  out.push(`<text x="${x + 8}" y="${y + 14}" font-weight="bold">${esc(n.label)}</text>`)
  if (n.settings) out.push(`<text x="${x + w - 8}" y="${y + 14}" text-anchor="end" fill="#444">${esc(n.settings)}</text>`)
  let cy = y + LINE
  for (const p of n.procs) {
    const dead = p.fate !== 'survived'
    out.push(
      `<text x="${x + 12}" y="${cy + 13}" fill="${dead ? '#b3261e' : '#1b7f3b'}">${dead ? '✗' : '✓'} ${esc(p.role)} ${p.pid} (uid ${p.uid ?? '?'}, adj ${p.oomScoreAdj ?? '?'}) ${p.fate}</text>`,
    )
    cy += LINE
  }
  for (const c of n.children) cy += drawNode(c, x + INDENT, cy + 3, w - 2 * INDENT, out) + 6
  return h
}

export function figure(id: string, runs: readonly KernelRun[]): string {
  const panels: string[] = []
  let maxH = 0
  runs.forEach((r, i) => {
    const c = cellOf(r, id)
    const x = 10 + i * (PANEL_W + 20)
    const out: string[] = [`<text x="${x}" y="46" font-weight="bold">${esc(kernelLabel(r))}: ${c.status === 'pass' ? 'pass' : c.status === 'fail' ? 'FAIL' : 'unsupported'}</text>`]
    let h = 0
    if (c.evidence && c.evidence.tree.length) h = drawNode(tree(c.evidence), x, 56, PANEL_W, out)
    else {
      out.push(`<text x="${x}" y="72" fill="#b3261e">${esc(c.status === 'pass' ? '' : c.reason).slice(0, 70)}</text>`)
      h = 30
    }
    maxH = Math.max(maxH, h)
    panels.push(...out)
  })
  const title = runs.map((r) => cellOf(r, id).evidence?.scenario).find(Boolean) ?? id
  const w = 20 + runs.length * (PANEL_W + 20)
  // The title is wrapped at the figure's width (bold 15 px: ~9 px a character), the panels moved down.
  const lines = wrapWords(`${id}: ${title}`, Math.floor((w - 20) / TITLE_CHAR_PX))
  const dy = (lines.length - 1) * TITLE_LINE_PX
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${maxH + 80 + dy}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...lines.map((l, i) => `<text x="10" y="${22 + i * TITLE_LINE_PX}" font-size="15" font-weight="bold">${esc(l)}</text>`),
    `<g transform="translate(0,${dy})">`,
    ...panels,
    '</g>',
    '</svg>',
    '',
  ].join('\n')
}

const TITLE_CHAR_PX = 9
const TITLE_LINE_PX = 19

/** Words in lines of at most `max` characters (a longer word gets a line of its own). */
export function wrapWords(text: string, max: number): string[] {
  const lines: string[] = []
  let cur = ''
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (cur && cur.length + 1 + word.length > max) {
      lines.push(cur)
      cur = word
    } else cur = cur ? `${cur} ${word}` : word
  }
  if (cur) lines.push(cur)
  return lines
}
