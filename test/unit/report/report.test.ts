// The report writers on evidence from real runs (test/fixtures/evidence, copied from `npm run matrix`).
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { formatTable, markdown } from '../../../src/report/write.js'
import { figure, wrapWords } from '../../../src/report/svg.js'
import { shortRecord, formatScenario } from '../../../src/report/summary.js'
import { cellOf, capabilityLines, type KernelRun } from '../../../src/report/matrix.js'
import type { Evidence } from '../../../src/report/evidence.js'

const evidence = (name: string, file: string): Evidence => ({
  ...(JSON.parse(readFileSync(new URL(`../../fixtures/evidence/${name}.json`, import.meta.url), 'utf8')) as Evidence),
  file,
})

const old: KernelRun = { name: 'bullseye', release: '5.10.0-32-cloud-amd64', where: 'vm', evidence: [evidence('5.10-11-root-pitfall', '11-root-pitfall')] }
const v419: KernelRun = { name: '../shared/kernels/linux-4.19.304/bzImage', release: '4.19.304', where: 'vm', evidence: [evidence('4.19-14-counting', '14-counting')] }
const sid: KernelRun = { name: 'sid', release: '7.2.13+deb14-cloud-amd64', where: 'vm', evidence: [evidence('7.2-11-root-pitfall', '11-root-pitfall')] }
// A run that never reached a verdict: the guest panicked before the specs ran.
const panicked: KernelRun = { name: 'bookworm', where: 'vm', failure: 'the guest kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs', evidence: [] }
// A failed verdict: spec 02's evidence with the verdict the fixture writes on an assertion failure.
const failedEvidence = { ...evidence('6.1-02-leaf-oom-group-1', '02-leaf-oom-group-1'), verdict: { state: 'fail', errors: ['expected shell (pid 140) to survive'] } }
const failed: KernelRun = { name: 'bookworm', release: '6.1.0-50-cloud-amd64', where: 'vm', evidence: [failedEvidence] }

describe('verdict cells', () => {
  it('pass, fail with the reason, and a run failure for every scenario of that kernel', () => {
    expect(cellOf(sid, '11-root-pitfall').status).toBe('pass')
    expect(cellOf(failed, '02-leaf-oom-group-1')).toMatchObject({ status: 'fail', reason: 'expected shell (pid 140) to survive' })
    expect(cellOf(panicked, '11-root-pitfall')).toMatchObject({ status: 'fail', reason: panicked.failure })
  })

  it('says per kernel what it exposed, as probed, and what its version must have', () => {
    expect(capabilityLines(old)).toEqual([
      'bullseye (5.10.0-32-cloud-amd64), Linux 5.10: has memory.swap.max, memory.events.local; its version must have memory.events.local; lacks cgroup.kill, oom_group_kill (not required by its version)',
    ])
    expect(capabilityLines(v419)).toEqual([
      '../shared/kernels/linux-4.19.304/bzImage (4.19.304), Linux 4.19: has memory.oom.group, memory.swap.max; its version must have memory.oom.group; lacks memory.events.local, cgroup.kill, oom_group_kill, memory.peak (not required by its version); memory.events counts each event in its own cgroup only',
    ])
  })

  it('says a cell whose cgroup2 is mounted with memory_localevents counts each event in its own cgroup', () => {
    // Spec 14 on bookworm+memory_localevents (6.1.0-50-cloud-amd64, cgroup2 mounted rw,memory_localevents).
    const cell: KernelRun = { name: 'bookworm+memory_localevents', release: '6.1.0-50-cloud-amd64', where: 'vm', evidence: [evidence('6.1-memory_localevents-14-counting', '14-counting')] }
    expect(capabilityLines(cell)).toEqual([
      'bookworm+memory_localevents (6.1.0-50-cloud-amd64), Linux 6.1: has memory.oom.group, memory.swap.max, memory.events.local, cgroup.kill, oom_group_kill, memory.peak; its version must have memory.oom.group, memory.events.local, cgroup.kill, oom_group_kill, memory.peak; cgroup2 mounted with memory_localevents; memory.events counts each event in its own cgroup only',
    ])
    expect(capabilityLines({ ...cell, name: 'bookworm', evidence: [evidence('6.1-02-leaf-oom-group-1', '02-leaf-oom-group-1')] })[0]).not.toContain('memory_localevents')
  })

  it('names what a kernel built without a feature its version must have lacks: 6.1.192 with cgroup.kill removed', () => {
    // `oomlab reproduce --kernel-src . 02-` on linux-source-6.1 with cgroup.kill taken out of kernel/cgroup/cgroup.c.
    const e = { ...(JSON.parse(readFileSync(new URL('../../fixtures/runs/kernel-src/no-cgroup-kill/evidence/02-leaf-oom-group-1.json', import.meta.url), 'utf8')) as Evidence), file: '02-leaf-oom-group-1' }
    const built: KernelRun = { name: '~/linux', release: e.kernel.release, where: 'vm', evidence: [e] }
    expect(e.verdict.errors).toEqual(['kernel 6.1.192-gb53dac8f2d9f (Linux 6.1) has no cgroup.kill, which every kernel since 5.14 has (661ee6280931)'])
    expect(capabilityLines(built)).toEqual([
      '~/linux (6.1.192-gb53dac8f2d9f), Linux 6.1: has memory.oom.group, memory.swap.max, memory.events.local, oom_group_kill, memory.peak; its version must have memory.oom.group, memory.events.local, cgroup.kill, oom_group_kill, memory.peak',
      '~/linux (6.1.192-gb53dac8f2d9f): LACKS cgroup.kill, which its version must have',
    ])
  })

  it('names what a kernel lacks though its version must have it', () => {
    // 4.19.304's real probe, as a kernel whose release says 5.14 would have shown it.
    const { capabilitiesExpected: _expected, ...probed } = v419.evidence[0]!
    const lying: KernelRun = { name: 'custom', release: '5.14.0-custom', where: 'vm', evidence: [{ ...probed, kernel: { ...probed.kernel, release: '5.14.0-custom' } }] }
    expect(capabilityLines(lying)[1]).toBe('custom (5.14.0-custom): LACKS memory.events.local, cgroup.kill, which its version must have')
  })
})

describe('the terminal table', () => {
  it('has a row per scenario, a column per kernel, and a reason for each failure', () => {
    const table = formatTable([old, sid, panicked])
    expect(table.split('\n')[2]).toMatch(/^11-root-pitfall\s+pass\s+pass\s+FAIL$/)
    expect(table).toContain(`  bookworm: ${panicked.failure}`)
    expect(table).toContain('lacks cgroup.kill, oom_group_kill (not required by its version)')
  })
})

describe('Markdown and figures', () => {
  it('shows, per kernel, who survived and the kernel record behind each kill', () => {
    const md = markdown([old, sid])
    expect(md).toContain('## 11-root-pitfall: stress-ng as root')
    expect(md).toMatch(/\| test01\/test011 \| stress-ng \| \d+ \| 0 \| -1000 \| survived \|/)
    expect(md).toMatch(/\| shell \| \d+ \| 0 \| 0 \| killed \| `\[[\d.]+\] Killed process \d+ \(sh\) UID:0 oom_score_adj:0` \|/)
  })

  it('draws every process of every kernel, marked survived or killed', () => {
    const svg = figure('11-root-pitfall', [old, sid])
    for (const run of [old, sid])
      for (const p of run.evidence[0]!.processes) expect(svg).toContain(`${p.role} ${p.pid} (uid ${p.uid}, adj ${p.oomScoreAdj}) ${p.fate}`)
    expect(svg.match(/✓/g)).toHaveLength(4) // stress-ng and its vm stressor, on each kernel
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true)
  })
})

describe('the summary', () => {
  it('condenses a kernel record to what matters', () => {
    expect(shortRecord('[   51.369333] Memory cgroup out of memory: Killed process 140 (sh) total-vm:2260kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:28kB oom_score_adj:0')).toBe(
      '[51.369333] Killed process 140 (sh) UID:1000 oom_score_adj:0',
    )
  })
  it('names the limit as the article writes it', () => {
    expect(formatScenario(failedEvidence)).toContain('test01/test011: memory.max=192M memory.oom.group=1')
    expect(formatScenario(failedEvidence)).toContain('why it failed: expected shell (pid 140) to survive')
  })
})

describe('the figure\'s title', () => {
  it('wraps at the figure\'s width instead of running past it', () => {
    const title = '11-root-pitfall: stress-ng as root: the group kill spares its -1000 processes and the cgroup is not emptied'
    const lines = wrapWords(title, 40)
    expect(lines.length).toBeGreaterThan(2)
    expect(lines.every((l) => l.length <= 40)).toBe(true)
    expect(lines.join(' ')).toBe(title)
    expect(wrapWords('short', 40)).toEqual(['short'])
  })
})
