/**
 * Progress on long work: apt's own download status (captured from real `apt-get download` runs, in
 * test/fixtures/apt), and how a step is shown: one live line on a terminal, few plain lines in a log.
 */
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { aptDownload } from '../../../src/kernel/apt.js'
import { StatusLine } from '../../../src/util/progress.js'
import { projectRoot } from '../../../src/util/paths.js'

const fixture = (name: string) => readFileSync(join(projectRoot, 'test/fixtures/apt', name), 'utf8').split('\n')

describe("apt's download status", () => {
  it('gives bytes of the size apt announced, in MB (a 34.3 MB kernel) and in kB', () => {
    const read = aptDownload()
    const states = fixture('download-linux-image-6.12.117.txt').map(read).filter((s) => s !== undefined)
    expect(states).toContainEqual({ fraction: 0.643375, bytes: 34.3e6 })
    expect(states.at(-1)).toEqual({ fraction: 1, bytes: 34.3e6 })
    // Before the "Get:" line, a fraction and no size.
    expect(states[0]).toEqual({ fraction: 0 })
    const small = fixture('download-busybox-static.txt').map(aptDownload()).filter((s) => s !== undefined)
    expect(small.at(-1)).toEqual({ fraction: 1, bytes: 928e3 })
  })
})

/** A stream that keeps what was written, a clock the test moves. */
function fakeTerminal(isTTY: boolean) {
  const out = { text: '', isTTY, columns: 60, write: (s: string) => void (out.text += s) }
  let t = 0
  const clock = { now: () => t, advance: (ms: number) => void (t += ms) }
  return { out, clock }
}

describe('the status line', () => {
  it('in a log: a line when a step starts, then one per quarter done or per 10 s, never one per tick', () => {
    const { out, clock } = fakeTerminal(false)
    const s = new StatusLine(out, { now: clock.now })
    for (let i = 0; i <= 100; i++) {
      s.progress('download', `downloading: ${i}%`, i / 100)
      clock.advance(50)
    }
    expect(out.text.split('\n').filter(Boolean)).toEqual(['oomlab: downloading: 0%', 'oomlab: downloading: 25%', 'oomlab: downloading: 50%', 'oomlab: downloading: 75%', 'oomlab: downloading: 100%'])
    out.text = ''
    // A step without a fraction: its start, then every 10 s.
    for (let sec = 0; sec < 25; sec++) {
      s.progress('boot', `booting, ${sec} s`)
      clock.advance(1000)
    }
    expect(out.text.split('\n').filter(Boolean)).toEqual(['oomlab: booting, 0 s', 'oomlab: booting, 10 s', 'oomlab: booting, 20 s'])
    expect(out.text).not.toContain('\r')
  })

  it('in a log: two steps at once (two kernels prepared together) are followed apart, not as a new step per call', () => {
    const { out, clock } = fakeTerminal(false)
    const s = new StatusLine(out, { now: clock.now })
    for (let i = 0; i <= 100; i++) {
      s.progress('sid', `sid: ${i}%`, i / 100)
      s.progress('trixie', `trixie: ${i}%`, i / 100)
      clock.advance(50)
    }
    const lines = out.text.split('\n').filter(Boolean)
    expect(lines.filter((l) => l.includes('sid:'))).toHaveLength(5)
    expect(lines.filter((l) => l.includes('trixie:'))).toHaveLength(5)
  })

  it('on a terminal: one line rewritten in place, cut to the width; a message clears it and stays', () => {
    const { out, clock } = fakeTerminal(true)
    const s = new StatusLine(out, { now: clock.now })
    s.progress('boot', 'booting, 1 s')
    clock.advance(10)
    s.progress('boot', 'booting, 1 s: too soon to redraw')
    clock.advance(200)
    s.progress('boot', `booting, 2 s: ${'x'.repeat(100)}`)
    expect(out.text).toBe(`\r\x1b[Koomlab: booting, 1 s\r\x1b[K${`oomlab: booting, 2 s: ${'x'.repeat(100)}`.slice(0, 59)}`)
    out.text = ''
    s.log('snapshot saved')
    expect(out.text).toBe('\r\x1b[Koomlab: snapshot saved\n')
    out.text = ''
    s.end()
    expect(out.text).toBe('')
  })
})
