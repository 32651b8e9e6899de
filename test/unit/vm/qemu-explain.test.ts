/** What a guest that stopped without a result is said to have done, from its console (captured from real runs). */
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { explainSilence } from '../../../src/vm/qemu/console.js'

const console61oom = readFileSync(new URL('../../fixtures/console/6.1-guest-out-of-memory.txt', import.meta.url), 'utf8').trim().split('\n')

describe('explainSilence', () => {
  it('names a guest that ran out of memory itself, and what its kernel killed', () => {
    expect(explainSilence(console61oom, 0)).toBe('the guest ran out of memory itself: its kernel killed node (not an experiment\'s cgroup limit); give the guest more with --memory')
  })

  it('does not take an experiment\'s memory-cgroup kill for the guest\'s own', () => {
    const memcg = '[   31.499446] Memory cgroup out of memory: Killed process 120 (stress-ng-vm) total-vm:323064kB, anon-rss:196348kB, file-rss:4kB, shmem-rss:0kB, UID:1000 pgtables:440kB oom_score_adj:1000'
    expect(explainSilence([memcg, 'oomlab: the guest agent exited with status 1'], 0)).toBe('the guest stopped without reporting a result (QEMU exit 0)')
  })

  it('names a panic by its line', () => {
    const tail = ['[    2.912345] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---', '[    2.901234] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)']
    expect(explainSilence(tail, 0)).toMatch(/^the guest kernel panicked: .*Kernel panic - not syncing: VFS: Unable to mount root fs/)
  })
})
