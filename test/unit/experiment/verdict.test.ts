/**
 * The verdict logic on the kernel logs recorded from real runs (test/fixtures/oom/<release>/, one
 * folder per kernel: Debian's 5.10.0-32, 6.1.0-50, 6.12.117 and 7.2.13 cloud kernels): which OOM events
 * are a tree's, which record is a process's, who is known only from the records, and the matchers the
 * specs judge with. The members are the processes the Lab knew in that run, read back from the capture
 * (each "Killed process" record's PID and name); their start times stand for "read from /proc".
 */
import { describe, it, expect } from 'vitest'
import { readdirSync, readFileSync } from 'node:fs'
import { RecordSplitter, formatRecord, type KmsgRecord } from '../../../src/kmsg/record.js'
import { parseOomLine } from '../../../src/kmsg/oom.js'
import { oomEventsOf, killRecordOf, membersFromRecords, type Member, type Fate, type Role } from '../../../src/experiment/fates.js'
import '../../../src/experiment/matchers.js'

const base = new URL('../../fixtures/oom/', import.meta.url).pathname
const kernels = readdirSync(base, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort()

function capture(kernel: string, scenario: string) {
  const records = new RecordSplitter().push(readFileSync(`${base}${kernel}/${scenario}.kmsg`, 'utf8'))
  const kernelPath = readFileSync(`${base}${kernel}/${scenario}.root`, 'utf8').trim()
  return { records, tree: { name: kernelPath.slice(1), kernelPath } }
}

/** Each process a "Killed process" record names, once, in the order the kernel printed them. */
function killedIn(records: readonly KmsgRecord[]): { pid: number; comm: string }[] {
  const seen: { pid: number; comm: string }[] = []
  for (const r of records) {
    const l = parseOomLine(r.message)
    if (l?.kind === 'killed' && !seen.some((s) => s.pid === l.pid)) seen.push({ pid: l.pid, comm: l.comm })
  }
  return seen
}

/**
 * Spec 02's run as the Lab knew it: the victim (the first record) is the vm worker, the other
 * stress-ng-vm its stressor; the shell, the sleeps and stress-ng by name.
 */
function spec02Members(records: readonly KmsgRecord[]): Member[] {
  const [victim, ...rest] = killedIn(records)
  const role = (comm: string): Role => (comm === 'sh' ? 'shell' : comm === 'sleep' ? 'nohup sleep' : comm === 'stress-ng' ? 'stress-ng' : 'stress-ng vm stressor')
  return [...rest.map((p) => ({ ...p, startTime: 4000 + p.pid, role: role(p.comm), cgroup: 'test01/test011' })), { ...victim!, startTime: 4000 + victim!.pid, role: 'stress-ng vm worker' as Role, cgroup: 'test01/test011' }]
}

/**
 * The kernel's ratelimit on the OOM report (oom_kill_process: `if (__ratelimit(&oom_rs)) dump_header(...)`,
 * 10 per 5 s) drops everything dump_header prints: "invoked oom-killer", the stack and memory dump, and
 * the "oom-kill:" summary (on 4.19-5.0, "Task in ... killed as a result of limit of"). "Killed process"
 * and "Tasks in ... are going to be killed" are printed outside it and stay. Built from a real capture by
 * dropping those records: no run of ours has been rate-limited yet.
 */
function rateLimited(records: readonly KmsgRecord[]): KmsgRecord[] {
  const kind = (r: KmsgRecord) => parseOomLine(r.message)?.kind
  // Before 5.0 there is no summary line, and "Kill process ... or sacrifice child" follows the header unlimited.
  const sacrifice = records.findLastIndex((r) => kind(r) === 'sacrifice')
  if (sacrifice >= 0) return records.slice(sacrifice)
  const lastHeader = records.findLastIndex((r) => kind(r) === 'summary' || kind(r) === 'task-in')
  return records.slice(lastHeader + 1)
}

describe.each(kernels)('kernel %s', (kernel) => {
  describe('oomEventsOf', () => {
    it('finds the tree\'s OOM event by the cgroup paths the kernel printed', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      const events = oomEventsOf(records, tree, [])
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({ oomMemcg: `${tree.kernelPath}/test01/test011`, taskMemcg: `${tree.kernelPath}/test01/test011`, groupKill: `${tree.kernelPath}/test01/test011` })
      expect(events[0]!.killed).toHaveLength(7)
    })

    it('leaves another tree\'s event alone, even one whose name begins like ours', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      expect(oomEventsOf(records, { name: 'oomlab-1-000000', kernelPath: '/oomlab-1-000000' }, [])).toEqual([])
      // "/oomlab-113-64f39d" is not within "/oomlab-113-64f3".
      const prefix = tree.kernelPath.slice(0, -2)
      expect(oomEventsOf(records, { name: prefix.slice(1), kernelPath: prefix }, [])).toEqual([])
    })

    it('rewrites the kernel\'s paths to the tree\'s own view inside a cgroup namespace', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      // The same tree mounted from a namespace rooted at its parent: the Lab's kernelPath is shorter than the log's.
      const own = { name: tree.name, kernelPath: `/ns/${tree.name}` }
      expect(oomEventsOf(records, own, [])[0]?.groupKill).toBe(`/ns/${tree.name}/test01/test011`)
    })

    it('with the header rate-limited away, keeps the group kill by its path and the victim by its record', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      const events = oomEventsOf(rateLimited(records), tree, [])
      expect(events).toHaveLength(1)
      const [e] = events as [(typeof events)[0]]
      expect(e.oomMemcg).toBeUndefined()
      expect(e.groupKill).toBe(`${tree.kernelPath}/test01/test011`)
      expect(e.victim).toEqual(killedIn(records)[0])
      expect(e.killed).toHaveLength(7)
    })

    it('with the header rate-limited away and no group line, owns a kill only by a process it started: PID and name', () => {
      const { records, tree } = capture(kernel, '01-leaf-oom-group-0')
      const limited = rateLimited(records)
      // The kill whose header was dropped (4.19's spec 01 logs the respawned worker's kills too: the last one).
      const [victim] = killedIn(limited) as [{ pid: number; comm: string }]
      expect(limited.map((r) => parseOomLine(r.message)?.kind).filter(Boolean)).toEqual(kernel.startsWith('4.') ? ['sacrifice', 'killed'] : ['killed'])
      const worker: Member = { ...victim, startTime: 4000, role: 'stress-ng vm worker', cgroup: 'test01/test011' }
      expect(oomEventsOf(limited, tree, [worker])).toHaveLength(1)
      expect(oomEventsOf(limited, tree, [])).toEqual([])
      // Known only from a record (start time -1): not proof it was ours.
      expect(oomEventsOf(limited, tree, [{ ...worker, startTime: -1 }])).toEqual([])
      // The PID of a process of ours that exited, since reused by another program.
      expect(oomEventsOf(limited, tree, [{ ...worker, comm: 'cat' }])).toEqual([])
    })
  })

  describe('killRecordOf', () => {
    it('gives each member its own record, as dmesg prints it', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      const events = oomEventsOf(records, tree, [])
      for (const m of spec02Members(records)) {
        const rec = records.find((r) => r.message.includes(`Killed process ${m.pid} (${m.comm})`))!
        expect(killRecordOf(events, m)).toBe(formatRecord(rec))
        expect(killRecordOf(events, m)).toMatch(new RegExp(String.raw`^\[\s*\d+\.\d{6}\] .*Killed process ${m.pid} \(${m.comm}\)`))
      }
    })

    it('gives none to a PID the kernel did not kill, nor to another program under a killed PID', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      const events = oomEventsOf(records, tree, [])
      const shell = spec02Members(records).find((m) => m.role === 'shell')!
      expect(killRecordOf(events, { pid: 99999, comm: 'sh' })).toBeUndefined()
      expect(killRecordOf(events, { ...shell, comm: 'cat' })).toBeUndefined()
      expect(killRecordOf([], shell)).toBeUndefined()
    })

    it('gives a process started as `nohup sleep` the record that names it sleep, though the lab last read it as nohup', () => {
      const { records, tree } = capture(kernel, '03-parent-oom-group-1')
      const events = oomEventsOf(records, tree, [])
      const sleep = killedIn(records).find((k) => k.comm === 'sleep')!
      expect(killRecordOf(events, { pid: sleep.pid, comm: 'nohup', execs: 'sleep' })).toMatch(new RegExp(String.raw`Killed process ${sleep.pid} \(sleep\)`))
      expect(killRecordOf(events, { pid: sleep.pid, comm: 'nohup' })).toBeUndefined()
    })
  })

  describe('membersFromRecords', () => {
    it('adds each process known only from the records once, the victim with its cgroup, the others without', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      const events = oomEventsOf(records, tree, [])
      const all = spec02Members(records)
      const known = all.filter((m) => m.role === 'shell' || m.role === 'nohup sleep')
      const stressor = all.find((m) => m.role === 'stress-ng vm stressor')!
      const cgroupOf = (p: string | undefined) => (p === `${tree.kernelPath}/test01/test011` ? 'test01/test011' : undefined)
      const found = membersFromRecords(events, known, cgroupOf, stressor.pid)
      expect(found.map((m) => [m.role, m.comm, m.cgroup])).toEqual([
        ['stress-ng vm worker', 'stress-ng-vm', 'test01/test011'],
        ['stress-ng', 'stress-ng', '(unknown)'],
        ['stress-ng vm stressor', 'stress-ng-vm', '(unknown)'],
      ])
      // Never alive to us: a start time no /proc entry has.
      expect(found.every((m) => m.startTime === -1)).toBe(true)
      expect(found.every((m) => m.uid === undefined || m.uid === 1000)).toBe(true)
      expect(membersFromRecords(events, all, cgroupOf, stressor.pid)).toEqual([])
    })

    it('adds the process a record names even when a member of ours had its PID before', () => {
      const { records, tree } = capture(kernel, '02-leaf-oom-group-1')
      const events = oomEventsOf(records, tree, [])
      const all = spec02Members(records)
      const shell = all.find((m) => m.role === 'shell')!
      const known = [...all.filter((m) => m !== shell), { ...shell, comm: 'cat', role: 'other' as Role }]
      const found = membersFromRecords(events, known, () => undefined, undefined)
      expect(found.map((m) => [m.pid, m.comm])).toEqual([[shell.pid, 'sh']])
    })
  })
})

describe('the matchers, on spec 02\'s run on 6.1.0-50', () => {
  const { records, tree } = capture('6.1.0-50-cloud-amd64', '02-leaf-oom-group-1')
  const events = oomEventsOf(records, tree, [])
  const shell = spec02Members(records).find((m) => m.role === 'shell')!
  const killed: Fate = { member: shell, liveness: 'gone', alive: false, inCgroup: false, killRecord: killRecordOf(events, shell)! }
  const survivor: Fate = { member: { ...shell, role: 'nohup sleep', pid: 150, comm: 'sleep' }, liveness: 'alive', alive: true, inCgroup: true }
  const diedUnrecorded: Fate = { member: { ...shell, pid: 151 }, liveness: 'zombie', alive: false, inCgroup: true }
  const movedOut: Fate = { ...survivor, inCgroup: false }

  it('toHaveBeenKilledByTheOomKiller passes on a dead process with its record, and fails on the rest naming why', () => {
    expect(killed).toHaveBeenKilledByTheOomKiller()
    expect(() => expect(survivor).toHaveBeenKilledByTheOomKiller()).toThrow('expected the OOM killer to kill nohup sleep (pid 150, test01/test011), but it is alive and the kernel log has no "Killed process" record for it')
    expect(() => expect(diedUnrecorded).toHaveBeenKilledByTheOomKiller()).toThrow('expected the OOM killer to kill shell (pid 151, test01/test011), but it is zombie and the kernel log has no "Killed process" record for it')
    expect(() => expect(killed).not.toHaveBeenKilledByTheOomKiller()).toThrow(`expected shell (pid ${shell.pid}, test01/test011) not to be killed, but the kernel says: ${killed.killRecord}`)
  })

  it('toHaveSurvived passes on a live process still in its cgroup, and fails on the rest naming why', () => {
    expect(survivor).toHaveSurvived()
    expect(() => expect(killed).toHaveSurvived()).toThrow(`expected shell (pid ${shell.pid}, test01/test011) to survive in its cgroup, but it is gone, not in cgroup.procs; kernel: ${killed.killRecord}`)
    expect(() => expect(movedOut).toHaveSurvived()).toThrow('expected nohup sleep (pid 150, test01/test011) to survive in its cgroup, but it is alive, not in cgroup.procs')
    expect(() => expect(diedUnrecorded).toHaveSurvived()).toThrow('but it is zombie')
    expect(() => expect(survivor).not.toHaveSurvived()).toThrow('expected nohup sleep (pid 150, test01/test011) to have been killed, but it is alive in its cgroup')
  })
})

describe('a rate-limited run, recorded on 6.1.0-50 (16M limit, oom.group=0: 14 OOM kills in 5.4 s)', () => {
  // ratelimited-16M-oom-group-0.capture.spec.ts beside it says how it was captured; the members are the Lab's own.
  const { records, tree } = capture('6.1.0-50-cloud-amd64', 'ratelimited-16M-oom-group-0')
  const members = JSON.parse(readFileSync(`${base}6.1.0-50-cloud-amd64/ratelimited-16M-oom-group-0.members.json`, 'utf8')) as Member[]
  const headerless = [121, 122, 123]

  it('holds three kills whose header the kernel suppressed, and says so before the next header', () => {
    const kinds = records.map((r) => parseOomLine(r.message)?.kind ?? (/callbacks suppressed/.test(r.message) ? 'suppressed' : undefined)).filter(Boolean)
    const killed = killedIn(records)
    expect(killed).toHaveLength(14)
    const at = kinds.indexOf('suppressed')
    expect(records.find((r) => /callbacks suppressed/.test(r.message))?.message).toBe('oom_kill_process: 3 callbacks suppressed')
    // Before it: the 10th headed kill, then three "Killed process" records alone.
    expect(kinds.slice(at - 5, at + 2)).toEqual(['summary', 'killed', 'killed', 'killed', 'killed', 'suppressed', 'invoked'])
  })

  it('oomEventsOf keeps every headed kill by its path, and a header-less one only for a process of ours: PID and name', () => {
    const events = oomEventsOf(records, tree, members)
    expect(events).toHaveLength(11)
    expect(events.every((e) => e.oomMemcg === `${tree.kernelPath}/test01/test011` && e.killed.length === 1)).toBe(true)
    expect(events.flatMap((e) => e.killed.map((k) => k.pid))).not.toEqual(expect.arrayContaining(headerless))
    // Had the Lab seen worker 122 in /proc, its header-less kill would be the tree's; another program under its PID would not.
    const worker122: Member = { pid: 122, startTime: 2500, role: 'stress-ng vm worker', cgroup: 'test01/test011', comm: 'stress-ng-vm' }
    expect(oomEventsOf(records, tree, [...members, worker122])).toHaveLength(12)
    expect(oomEventsOf(records, tree, [...members, { ...worker122, comm: 'sleep' }])).toHaveLength(11)
  })

  it('killRecordOf and membersFromRecords: the first worker has its record; the later ones are known from the records, without a cgroup when headerless', () => {
    const events = oomEventsOf(records, tree, members)
    const worker = members.find((m) => m.role === 'stress-ng vm worker')!
    expect(killRecordOf(events, worker)).toMatch(new RegExp(String.raw`Killed process ${worker.pid} \(stress-ng-vm\)`))
    const found = membersFromRecords(oomEventsOf(records, tree, [...members, { pid: 122, startTime: 2500, role: 'stress-ng vm worker', cgroup: 'test01/test011', comm: 'stress-ng-vm' }]), members, (p) => (p === `${tree.kernelPath}/test01/test011` ? 'test01/test011' : undefined), members.find((m) => m.role === 'stress-ng vm stressor')!.pid)
    expect(found.map((m) => m.pid)).toEqual([112, 113, 114, 115, 116, 117, 118, 119, 120, 122, 124])
    // The header names the victim's cgroup (task_memcg); a suppressed header leaves it unknown.
    expect(found.filter((m) => m.cgroup === '(unknown)').map((m) => m.pid)).toEqual([122])
    expect(found.filter((m) => m.pid !== 122).every((m) => m.cgroup === 'test01/test011')).toBe(true)
    expect(found.every((m) => m.role === 'stress-ng vm worker')).toBe(true)
  })
})
