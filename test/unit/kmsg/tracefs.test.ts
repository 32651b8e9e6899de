/** The populated tracepoint's lines, as a 6.1 guest printed them during a group kill. */
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { lastEmptied } from '../../../src/kmsg/tracefs.js'

const trace = readFileSync(new URL('../../fixtures/trace/6.1.0-50-cloud-amd64-leaf-group-kill.trace', import.meta.url), 'utf8')
const root = '/oomlab-95-go-1ulajuk-e19b90'

describe('cgroup_notify_populated', () => {
  it('gives when each cgroup turned empty, in the kernel log clock', () => {
    expect(lastEmptied(trace, `${root}/test01/test011`)).toBe(30_251_104)
    expect(lastEmptied(trace, `${root}/test01`)).toBe(30_251_226)
    expect(lastEmptied(trace, root)).toBe(30_251_236)
  })

  it('ignores "val=1", other paths and prefixes of a path', () => {
    const filled = trace.split('\n').filter((l) => !l.includes('val=0')).join('\n')
    expect(lastEmptied(filled, `${root}/test01/test011`)).toBeUndefined()
    expect(lastEmptied(trace, `${root}/test01/test0`)).toBeUndefined()
    expect(lastEmptied(trace, '/elsewhere')).toBeUndefined()
  })
})
