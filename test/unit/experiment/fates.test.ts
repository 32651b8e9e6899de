// Who is who in the tree.
import { describe, it, expect } from 'vitest'
import { roleOf } from '../../../src/experiment/fates.js'

describe('roles', () => {
  // PIDs as in a 6.1 run of spec 02 (test/fixtures/oom/6.1.0-50-cloud-amd64): shell 140, stress-ng 143, stressor 144, worker 145.
  const known = { stressorPid: 144, shellPids: [140] }
  it('tells stress-ng\'s processes apart by their parents', () => {
    expect(roleOf({ pid: 143, ppid: 140, comm: 'stress-ng' }, known)).toBe('stress-ng')
    expect(roleOf({ pid: 144, ppid: 143, comm: 'stress-ng-vm' }, known)).toBe('stress-ng vm stressor')
    expect(roleOf({ pid: 145, ppid: 144, comm: 'stress-ng-vm' }, known)).toBe('stress-ng vm worker')
  })
  it('knows stress-ng by its stressor\'s parent once its shell is gone', () => {
    // PIDs of sid's spec 11 in the soak of d1923c8: shell 118 killed by the group kill before the tree was read,
    // stress-ng 121 re-parented, its stressor 122 (spared, oom_score_adj -1000) still its child.
    const late = { stressorPid: 122, shellPids: [118], stressNgPid: 121 }
    expect(roleOf({ pid: 121, ppid: 1, comm: 'stress-ng' }, late)).toBe('stress-ng')
    expect(roleOf({ pid: 121, ppid: 1, comm: 'stress-ng' }, { ...late, stressNgPid: undefined })).toBe('other')
  })
  it('calls any other process "other", whatever its name', () => {
    expect(roleOf({ pid: 150, ppid: 1, comm: 'stress-ng-vm' }, known)).toBe('other')
    expect(roleOf({ pid: 151, ppid: 1, comm: 'stress-ng' }, known)).toBe('other')
    expect(roleOf({ pid: 152, ppid: 140, comm: 'cat' }, known)).toBe('other')
  })
})
