/**
 * What kbuild's output says of a build as it goes: its short lines ("  CC      mm/oom_kill.o") name each
 * step; a compiled object is a CC or AS line (the host's tools, HOSTCC, are not part of the kernel).
 */

export interface BuildCount {
  /** Kernel objects compiled so far (CC and AS lines). */
  objects: number
  /** The last step's target, e.g. "mm/oom_kill.o". */
  last?: string
  /** The first line that says what went wrong, e.g. "mm/oom_kill.c:12:1: error: ...". */
  firstError?: string
}

const STEP = /^ {2}([A-Z][A-Z0-9_]*(?: \[M\])?)\s+(\S.*)$/
const OBJECT_TAGS = new Set(['CC', 'AS'])
const ERROR = /(?:^|\s)(?:error|fatal error):|^make(?:\[\d+\])?: \*\*\*/

/** Counts one more line of kbuild's output into `c` (in place); true when it was an object. */
export function countLine(c: BuildCount, line: string): boolean {
  const step = STEP.exec(line)
  if (step) {
    c.last = step[2]!.trim()
    if (OBJECT_TAGS.has(step[1]!) && c.last.endsWith('.o') && !c.last.includes('/tools/') && !c.last.startsWith('.tmp_')) {
      c.objects++
      return true
    }
    return false
  }
  if (c.firstError === undefined && ERROR.test(line)) c.firstError = line.trim()
  return false
}

export function countLog(text: string): BuildCount {
  const c: BuildCount = { objects: 0 }
  for (const line of text.split('\n')) countLine(c, line)
  return c
}

export function formatElapsed(ms: number): string {
  const s = Math.round(ms / 1000)
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
}

/** "412 of about 1,830 objects" or, with nothing to compare to, "412 objects". */
export function formatCount(objects: number, about?: number): string {
  const n = (x: number) => x.toLocaleString('en-US')
  return about !== undefined && about > 0 ? `${n(objects)} of about ${n(Math.max(about, objects))} objects` : `${n(objects)} object${objects === 1 ? '' : 's'}`
}
