// Preflight on mount tables read from real machines (test/fixtures/hosts).
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { parseMountInfo } from '../../../src/cgroup/cgroupfs.js'
import { cgroupLayout, checkCgroups, checkRoot, checkSwap, formatCheck } from '../../../src/host/preflight.js'

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/hosts/${name}`, import.meta.url), 'utf8')

describe('a hybrid host (this project machine: Debian 12, memory on cgroup v1)', () => {
  const mounts = parseMountInfo(fixture('debian12-hybrid.mountinfo'))
  const layout = cgroupLayout(mounts)
  const rootControllers = fixture('debian12-hybrid.root-controllers').trim().split(/\s+/)

  it('is classified as hybrid, with the v2 mount and the v1 memory hierarchy found', () => {
    expect(layout).toEqual({ kind: 'hybrid', mount: '/sys/fs/cgroup/unified', memoryV1: '/sys/fs/cgroup/memory' })
  })

  it('fails the memory check in one line that names the reason and what to do', () => {
    const checks = checkCgroups(layout, rootControllers)
    const memory = checks.find((c) => c.name === 'memory controller')!
    expect(memory.ok).toBe(false)
    const line = formatCheck(memory)
    expect(line).not.toContain('\n')
    expect(line).toMatch(/^FAIL {2}memory controller: hybrid cgroups: the memory controller is bound to cgroup v1 at \/sys\/fs\/cgroup\/memory/)
    expect(line).toContain('npm test')
  })

  it('passes once the v2 root offers memory', () => {
    expect(checkCgroups(layout, [...rootControllers, 'memory']).every((c) => c.ok)).toBe(true)
  })
})

describe('a unified host (the oomlab guest)', () => {
  const mounts = parseMountInfo(fixture('guest-unified.mountinfo'))
  it('is classified as unified, and passes with memory available', () => {
    const layout = cgroupLayout(mounts)
    expect(layout).toEqual({ kind: 'unified', mount: '/sys/fs/cgroup' })
    expect(checkCgroups(layout, ['cpuset', 'cpu', 'io', 'memory', 'pids']).every((c) => c.ok)).toBe(true)
  })
})

describe('a cgroup v1 only host', () => {
  // The hybrid table without its cgroup2 line is what a legacy-only host mounts.
  const mounts = parseMountInfo(fixture('debian12-hybrid.mountinfo')).filter((m) => m.fsType !== 'cgroup2')
  it('says there is no cgroup2 at all', () => {
    const [check] = checkCgroups(cgroupLayout(mounts), undefined)
    expect(formatCheck(check!)).toMatch(/^FAIL {2}cgroup v2: no cgroup2 filesystem mounted \(cgroup v1 only\); boot with systemd\.unified_cgroup_hierarchy=1/)
  })
})

describe('root and swap', () => {
  it('asks for sudo when not root', () => {
    expect(formatCheck(checkRoot(1000))).toBe('FAIL  root: running as uid 1000; creating cgroups and setting memory.max needs root; run with sudo (e.g. `sudo npm test`)')
    expect(checkRoot(0).ok).toBe(true)
  })
  it('refuses active swap only when the kernel cannot keep the test cgroups off it', () => {
    expect(checkSwap(0, undefined).ok).toBe(true)
    expect(checkSwap(1, true).ok).toBe(true)
    expect(checkSwap(1, false).ok).toBe(false)
    expect(checkSwap(1, undefined).ok).toBe(false)
  })
})
