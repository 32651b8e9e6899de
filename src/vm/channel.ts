/**
 * The result channel from guest to host: one JSON frame per line on the guest's second serial
 * port, which QEMU writes to a host file. The console (first port) stays a human log only.
 */
export interface TestTiming {
  file: string
  name: string
  state: string
  ms: number
}

export interface BaselineRun {
  scenario: number
  ms: number
  exitCode: number
  stderr: string
}

export type Frame =
  | { type: 'hello'; release: string; version: string; uptimeMs: number }
  | { type: 'file'; name: string; content: string }
  | {
      type: 'result'
      exitCode: number
      passed: number
      failed: number
      skipped: number
      vitestMs: number
      uptimeMs: number
      /** Guest uptime (ms) at each step of the agent's run: where the in-guest time goes. */
      phases?: Record<string, number>
      tests?: TestTiming[]
      /** The article's experiments as a shell script, in the same boot (oomlab bench). */
      baseline?: BaselineRun[]
      /** cgroups and workload processes still there after the specs' teardown: must be empty. */
      leftovers: string[]
    }
  | { type: 'error'; message: string }

const PREFIX = 'OOMLAB '

export function encodeFrame(f: Frame): string {
  return `${PREFIX}${JSON.stringify(f)}\n`
}

/** Frames in the channel's bytes so far; a cut-off last line (guest died mid-write) is ignored. */
export function decodeFrames(text: string): { frames: Frame[]; garbled: number } {
  const frames: Frame[] = []
  let garbled = 0
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '')
    if (!line) continue
    if (!line.startsWith(PREFIX)) {
      garbled++
      continue
    }
    try {
      frames.push(JSON.parse(line.slice(PREFIX.length)) as Frame)
    } catch {
      garbled++
    }
  }
  return { frames, garbled }
}
