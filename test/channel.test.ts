import { describe, it, expect } from 'vitest'
import { encodeFrame, decodeFrames } from '../src/vm/channel.js'

describe('the result channel', () => {
  it('carries frames through a serial line that adds carriage returns', () => {
    const text = [
      encodeFrame({ type: 'hello', release: '6.1.0-50-cloud-amd64', version: 'Linux version 6.1.0-50', uptimeMs: 8790 }),
      encodeFrame({ type: 'file', name: 'evidence/x.json', content: '{\n "a": 1\n}\n' }),
    ]
      .join('')
      .replace(/\n/g, '\r\n')
    const { frames, garbled } = decodeFrames(text)
    expect(garbled).toBe(0)
    expect(frames.map((f) => f.type)).toEqual(['hello', 'file'])
    expect(frames[1]).toMatchObject({ content: '{\n "a": 1\n}\n' })
  })

  it('ignores a last frame the guest did not finish writing, and counts noise', () => {
    const whole = encodeFrame({ type: 'error', message: 'boom' })
    const cut = encodeFrame({ type: 'result', exitCode: 0, passed: 3, failed: 0, skipped: 0, vitestMs: 1, uptimeMs: 2, leftovers: [] }).slice(0, 30)
    const { frames, garbled } = decodeFrames(`noise\n${whole}${cut}`)
    expect(frames).toEqual([{ type: 'error', message: 'boom' }])
    expect(garbled).toBe(2)
  })
})
