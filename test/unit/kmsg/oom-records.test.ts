/**
 * The kernel log and memory.events parsers on records captured from real runs of the article's
 * scenarios (test/fixtures/oom/<kernel release>/, made by scripts/capture-fixtures.mts).
 */
import { describe, it, expect } from 'vitest'
import { readdirSync, readFileSync } from 'node:fs'
import { parseRecord, RecordSplitter } from '../../../src/kmsg/record.js'
import { groupOomEvents, isWithin, parseOomLine } from '../../../src/kmsg/oom.js'
import { parseMemoryEvents, delta } from '../../../src/cgroup/memory-events.js'
import { eventsCountLocally, mustHave } from '../../../src/kernel/capabilities.js'

const base = new URL('../../fixtures/oom/', import.meta.url).pathname
const kernels = readdirSync(base, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort()
const read = (kernel: string, file: string) => readFileSync(`${base}${kernel}/${file}`, 'utf8')

function load(kernel: string, scenario: string) {
  const records = new RecordSplitter().push(read(kernel, `${scenario}.kmsg`))
  const root = read(kernel, `${scenario}.root`).trim()
  const events = groupOomEvents(records).filter((e) => isWithin(e.oomMemcg, root))
  const before = parseMemoryEvents(read(kernel, `${scenario}.memory.events.before`))
  const after = parseMemoryEvents(read(kernel, `${scenario}.memory.events.after`))
  return { records, root, events, before, after }
}

/** oom_group_kill came in 5.17: 4.19 and Debian's 5.10 do not have it. */
const hasGroupKillCounter = (release: string) => mustHave(release, 'oom_group_kill')

it('covers at least three kernels', () => {
  expect(kernels.length).toBeGreaterThanOrEqual(3)
})

describe.each(kernels)('kernel %s', (kernel) => {
  it('01 (oom.group=0 on the leaf): each OOM kills one stress-ng worker, no group kill', () => {
    const { events, root, before, after } = load(kernel, '01-leaf-oom-group-0')
    expect(events.length).toBeGreaterThanOrEqual(1)
    for (const e of events) {
      expect(e.oomMemcg).toBe(`${root}/test01/test011`)
      expect(e.taskMemcg).toBe(`${root}/test01/test011`)
      expect(e.groupKill).toBeUndefined()
      expect(e.killed).toHaveLength(1)
      expect(e.killed[0]).toMatchObject({ comm: 'stress-ng-vm', pid: e.victim!.pid })
      if (e.killed[0]!.oomScoreAdj !== undefined) expect(e.killed[0]!.oomScoreAdj).toBe(1000)
    }
    expect(delta(before, after, 'oom_kill')).toBeGreaterThanOrEqual(events.length)
  })

  it('02 (oom.group=1 on the leaf): one group kill of test011; the victim is named twice', () => {
    const { events, root, before, after } = load(kernel, '02-leaf-oom-group-1')
    expect(events).toHaveLength(1)
    const [e] = events as [(typeof events)[0]]
    expect(e.groupKill).toBe(`${root}/test01/test011`)
    const pids = e.killed.map((k) => k.pid)
    expect(pids.filter((p) => p === e.victim!.pid)).toHaveLength(2)
    expect(new Set(e.killed.map((k) => k.comm))).toEqual(new Set(['stress-ng-vm', 'stress-ng', 'sh', 'sleep']))
    expect(e.killed.every((k) => k.uid === undefined || k.uid === 1000)).toBe(true)
    // memory.events counts every "Killed process" of the event, the victim's second one included.
    expect(delta(before, after, 'oom_kill')).toBe(e.killed.length)
    if (hasGroupKillCounter(kernel)) expect(delta(before, after, 'oom_group_kill')).toBe(1)
    else expect(after.oom_group_kill).toBeUndefined()
  })

  it('03 (oom.group=1 on the parent): the limit and the group are test01, the victim is in test011', () => {
    const { events, root, before, after } = load(kernel, '03-parent-oom-group-1')
    expect(events).toHaveLength(1)
    const [e] = events as [(typeof events)[0]]
    expect(e.oomMemcg).toBe(`${root}/test01`)
    expect(e.taskMemcg).toBe(`${root}/test01/test011`)
    expect(e.groupKill).toBe(`${root}/test01`)
    expect(e.killed.filter((k) => k.comm === 'sleep')).toHaveLength(3)
    // Up the tree from 5.2 (test01 counts its children's kills); before, only where each task was, and
    // test01 holds no task of its own.
    expect(delta(before, after, 'oom_kill')).toBe(eventsCountLocally(kernel) ? 0 : e.killed.length)
    expect(delta(before, after, 'oom')).toBe(1)
  })

  it('finds OOM lines only where the OOM killer printed them (the memory dump is not one)', () => {
    const { records } = load(kernel, '02-leaf-oom-group-1')
    const oomLines = records.filter((r) => parseOomLine(r.message))
    expect(oomLines.length).toBeLessThan(records.length / 3)
    expect(records.some((r) => /^Tasks state/.test(r.message))).toBe(true)
    expect(records.filter((r) => /^Tasks state/.test(r.message)).every((r) => parseOomLine(r.message) === undefined)).toBe(true)
  })
})

describe.each(kernels)('kernel %s: why a judgement waits for the barrier', (kernel) => {
  // What a spec that judged at the first "Killed process" record (the old waitForOomEvent) had read:
  // the victim alone, no group line, no member. Only the records after it make the group kill.
  it.each(['02-leaf-oom-group-1', '03-parent-oom-group-1'])('%s: the victim\'s record comes before the group line and the members\'', (scenario) => {
    const { records, root } = load(kernel, scenario)
    const first = records.findIndex((r) => /Killed process \d+/.test(r.message))
    expect(first).toBeGreaterThan(0)
    const early = groupOomEvents(records.slice(0, first + 1)).filter((e) => isWithin(e.oomMemcg, root))
    expect(early).toHaveLength(1)
    expect(early[0]!.groupKill).toBeUndefined()
    expect(early[0]!.killed).toHaveLength(1)
    const all = groupOomEvents(records).filter((e) => isWithin(e.oomMemcg, root))
    expect(all[0]!.groupKill).toBeDefined()
    expect(all[0]!.killed.length).toBeGreaterThanOrEqual(5)
  })
})

describe('memory.events', () => {
  it('reports a key the kernel lacks as absent, never as 0', () => {
    const old = parseMemoryEvents(read(kernels.find((k) => !hasGroupKillCounter(k))!, '02-leaf-oom-group-1.memory.events.after'))
    expect(old.oom_group_kill).toBeUndefined()
    expect('oom_group_kill' in old).toBe(false)
    expect(delta(old, old, 'oom_group_kill')).toBeUndefined()
  })
})

describe('kmsg records', () => {
  it('parses the prefix and keeps the message whole', () => {
    expect(parseRecord('6,1234,5678901,-;Tasks in /a/b are going to be killed due to memory.oom.group set')).toEqual({
      seq: 1234,
      usec: 5678901,
      level: 6,
      message: 'Tasks in /a/b are going to be killed due to memory.oom.group set',
    })
    expect(parseRecord('not a record')).toBeUndefined()
  })

  it('reassembles records split across reads and drops continuation lines', () => {
    const s = new RecordSplitter()
    expect(s.push('3,1,10,-;first\n SUBSYSTEM=mem\n3,2,2')).toHaveLength(1)
    expect(s.push('0,-;second\n').map((r) => r.message)).toEqual(['second'])
  })
})

describe('kernel 4.19.304: its own formats, captured', () => {
  // mem_cgroup_print_oom_info's "Task in ... killed as a result of limit of ...", oom_kill_process's
  // "Memory cgroup out of memory: Kill process N (comm) score S or sacrifice child" and a "Killed process"
  // with no reason, UID or oom_score_adj; no "oom-kill:" summary line yet.
  const { records, events, root } = load('4.19.304', '03-parent-oom-group-1')

  it('names the limit and the victim in the lines 4.19 prints, and not in the later ones', () => {
    expect(records.some((r) => /^oom-kill:/.test(r.message))).toBe(false)
    expect(records.filter((r) => parseOomLine(r.message)?.kind === 'task-in').map((r) => r.message)).toEqual([
      `Task in ${root}/test01/test011 killed as a result of limit of ${root}/test01`,
    ])
    const sacrifice = records.map((r) => parseOomLine(r.message)).filter((l) => l?.kind === 'sacrifice')
    expect(sacrifice).toEqual([{ kind: 'sacrifice', pid: events[0]!.victim!.pid, comm: 'stress-ng-vm', score: expect.any(Number) }])
  })

  it('gives the same event as newer kernels: limit, victim, group and every member, the victim twice', () => {
    expect(events).toHaveLength(1)
    const [e] = events as [(typeof events)[0]]
    expect(e).toMatchObject({ oomMemcg: `${root}/test01`, taskMemcg: `${root}/test01/test011`, groupKill: `${root}/test01` })
    expect(e.killed.every((k) => k.reason === undefined && k.uid === undefined && k.oomScoreAdj === undefined)).toBe(true)
    expect(e.killed.filter((k) => k.pid === e.victim!.pid)).toHaveLength(2)
    expect(e.killed).toHaveLength(8) // sh, three sleeps, stress-ng, its stressor, the worker twice
  })
})
