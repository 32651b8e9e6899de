// What each kernel must expose, by its upstream version, whoever built it. The releases, bzImage headers
// and probes are those of real runs: test/fixtures/oom/<release>/, test/fixtures/kernels/*.head, and the
// capabilities the Lab probed on 4.19.304 (test/fixtures/evidence/4.19-14-counting.json).
import { describe, it, expect } from 'vitest'
import { readdirSync, readFileSync } from 'node:fs'
import { readBzImageVersion, releaseOf } from '../../../src/kernel/bzimage.js'
import { CAPABILITIES, capabilityVerdict, eventsCountLocally, expectedCapabilities, kernelVersion, type Capability } from '../../../src/kernel/capabilities.js'
import type { Evidence } from '../../../src/report/evidence.js'

const releases = readdirSync(new URL('../../fixtures/oom/', import.meta.url)).sort()
const evidence419 = JSON.parse(readFileSync(new URL('../../fixtures/evidence/4.19-14-counting.json', import.meta.url), 'utf8')) as Evidence
const probed419 = evidence419.capabilities as Record<Capability, boolean>

describe('upstream version', () => {
  it('is read from any release: Debian, a backport, Ubuntu, a tree of one\'s own', () => {
    expect(kernelVersion('6.1.0-50-cloud-amd64')).toEqual([6, 1])
    expect(kernelVersion('6.12.117+deb13-cloud-amd64')).toEqual([6, 12])
    expect(kernelVersion('6.1.0-0.deb11.17-amd64')).toEqual([6, 1]) // bookworm's 6.1 backported to bullseye
    expect(kernelVersion('5.15.0-91-generic')).toEqual([5, 15]) // Ubuntu 22.04
    expect(kernelVersion('6.8.0-rc1-dirty')).toEqual([6, 8])
    expect(kernelVersion('not-a-release')).toBeUndefined()
  })

  it('is read from the bzImage header of a kernel built from a 4.19 tree', () => {
    const head = readFileSync(new URL('../../fixtures/kernels/4.19.304.head', import.meta.url))
    expect(kernelVersion(releaseOf(readBzImageVersion(head)!))).toEqual([4, 19])
  })
})

describe('capabilities a kernel must have, by version', () => {
  it('knows the fixtures\' kernels, 4.19 among them', () => {
    expect(releases).toEqual(['4.19.304', '5.10.0-32-cloud-amd64', '6.1.0-50-cloud-amd64', '6.12.117+deb13-cloud-amd64', '7.2.13+deb14-cloud-amd64'])
  })

  it('expects each feature from the version that brought it, for every kernel', () => {
    const columns = ['memory.oom.group', 'memory.events.local', 'cgroup.kill', 'oom_group_kill', 'memory.peak'] as const
    const table = [...releases, '6.1.0-0.deb11.17-amd64', '5.15.0-91-generic', '5.16.20', '6.8.0-rc1-dirty', '4.18.0'].map((r) => {
      const e = expectedCapabilities(r)
      return [r, ...columns.map((c) => e[c])]
    })
    expect(table).toEqual([
      ['4.19.304', true, false, false, false, false],
      ['5.10.0-32-cloud-amd64', true, true, false, false, false],
      ['6.1.0-50-cloud-amd64', true, true, true, true, true],
      ['6.12.117+deb13-cloud-amd64', true, true, true, true, true],
      ['7.2.13+deb14-cloud-amd64', true, true, true, true, true],
      ['6.1.0-0.deb11.17-amd64', true, true, true, true, true],
      ['5.15.0-91-generic', true, true, true, false, false],
      ['5.16.20', true, true, true, false, false],
      ['6.8.0-rc1-dirty', true, true, true, true, true],
      ['4.18.0', false, false, false, false, false],
    ])
    // The kernel's configuration decides memory.swap.max as well (CONFIG_SWAP): probed, never required.
    expect(expectedCapabilities('7.2.13+deb14-cloud-amd64')['memory.swap.max']).toBe(false)
  })

  it('passes what a real 4.19.304 exposed, holding it to 4.19', () => {
    expect(evidence419.kernel.release).toBe('4.19.304')
    const verdicts = CAPABILITIES.map((c) => [c, capabilityVerdict('4.19.304', c, probed419[c] ?? false).kind])
    expect(verdicts).toEqual([
      ['memory.oom.group', 'present'],
      ['memory.swap.max', 'present'],
      ['memory.events.local', 'absent'],
      ['cgroup.kill', 'absent'],
      ['oom_group_kill', 'absent'],
      ['memory.peak', 'absent'],
    ])
  })

  it('fails a kernel that lacks what its version must have, naming the feature and the version', () => {
    // The same probe from a kernel whose release says 5.17: it lost features every 5.17 has.
    const missing = CAPABILITIES.map((c) => capabilityVerdict('5.17.3-custom', c, probed419[c] ?? false)).filter((v) => v.kind === 'missing')
    expect(missing.map((v) => (v.kind === 'missing' ? v.why : ''))).toEqual([
      'kernel 5.17.3-custom (Linux 5.17) has no memory.events.local, which every kernel since 5.2 has (1e577f970f66)',
      'kernel 5.17.3-custom (Linux 5.17) has no cgroup.kill, which every kernel since 5.14 has (661ee6280931)',
      'kernel 5.17.3-custom (Linux 5.17) has no oom_group_kill, which every kernel since 5.17 has (b6bf9abb0aa4)',
    ])
  })

  it('fails a 4.19 without memory.oom.group, and calls a 4.18 without it unsupported', () => {
    expect(capabilityVerdict('4.19.304', 'memory.oom.group', false)).toEqual({
      kind: 'missing',
      why: 'kernel 4.19.304 (Linux 4.19) has no memory.oom.group, which every kernel since 4.19 has (3d8b38eb81ca)',
    })
    expect(capabilityVerdict('4.18.20', 'memory.oom.group', false).kind).toBe('absent')
    expect(capabilityVerdict('6.1.0-50-cloud-amd64', 'memory.swap.max', false).kind).toBe('absent')
  })
})

describe('where memory.events counts a kill', () => {
  it('in the task\'s cgroup alone before 5.2 or with memory_localevents, up the tree from 5.2', () => {
    expect(eventsCountLocally('4.19.304')).toBe(true)
    expect(eventsCountLocally('5.1.21')).toBe(true)
    expect(eventsCountLocally('5.2.0')).toBe(false)
    expect(eventsCountLocally('6.1.0-50-cloud-amd64', 'rw,nosuid,nodev,noexec,relatime,nsdelegate')).toBe(false)
    expect(eventsCountLocally('6.1.0-50-cloud-amd64', 'rw,nsdelegate,memory_localevents')).toBe(true)
  })

  it('as 4.19.304 did: a parent\'s group kill counted in its children, not in the parent whose limit was hit', () => {
    const [test01, test011, test012] = evidence419.tree
    const moved = (c: typeof test01) => (c!.memoryEventsAfter!.oom_kill ?? 0) - (c!.memoryEventsBefore!.oom_kill ?? 0)
    const records = evidence419.oomEvents[0]!.killed.length
    expect([test01!.name, moved(test01), moved(test011) + moved(test012)]).toEqual(['test01', 0, records])
    expect(test01!.memoryEventsAfter!.oom).toBe(1) // the OOM itself is counted where the limit was hit
  })
})
