// What each kernel must expose, by version: the releases are those of the kernels the fixtures come from.
import { describe, it, expect } from 'vitest'
import { readdirSync } from 'node:fs'
import { mustHave, isDebianKernel } from '../src/experiment/capabilities.js'

const releases = readdirSync(new URL('./fixtures/oom/', import.meta.url)).sort()

describe('capabilities a kernel must have', () => {
  it('knows the fixtures\' kernels for Debian builds', () => {
    expect(releases).toEqual(['5.10.0-32-cloud-amd64', '6.1.0-50-cloud-amd64', '6.12.117+deb13-cloud-amd64', '7.2.13+deb14-cloud-amd64'])
    expect(releases.every(isDebianKernel)).toBe(true)
  })

  it('expects cgroup.kill from 5.14 and oom_group_kill from 5.17, and excuses older kernels', () => {
    const table = releases.map((r) => [r, mustHave(r, 'cgroup.kill'), mustHave(r, 'oom_group_kill'), mustHave(r, 'memory.events.local')])
    expect(table).toEqual([
      ['5.10.0-32-cloud-amd64', false, false, true],
      ['6.1.0-50-cloud-amd64', true, true, true],
      ['6.12.117+deb13-cloud-amd64', true, true, true],
      ['7.2.13+deb14-cloud-amd64', true, true, true],
    ])
    expect(mustHave('5.14.0-1-amd64', 'cgroup.kill')).toBe(true)
    expect(mustHave('5.16.0-1-amd64', 'oom_group_kill')).toBe(false)
  })

  it('holds a kernel of unknown origin to nothing: it is probed, and the report says what it lacks', () => {
    expect(isDebianKernel('6.8.0-rc1-dirty')).toBe(false)
    expect(mustHave('6.8.0-rc1-dirty', 'oom_group_kill')).toBe(false)
  })
})
