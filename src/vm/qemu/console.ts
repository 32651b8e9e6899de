/**
 * A guest's console as the harness reads it: QEMU's output split into lines, the last of them and any
 * kernel incident (BUG, panic, lockup) kept, and what they say when a guest stops unexpectedly.
 */
import { StringDecoder } from 'node:string_decoder'

const TAIL = 30
/** An incident's console is kept whole, up to this many lines (the replayed kernel log is long). */
const INCIDENT_LINES = 5000
const INCIDENT_START = /\b(BUG: |Kernel panic|watchdog: )/

/** A guest's console as kept for its report: the last lines, and from a kernel's first BUG or panic on, all of it. */
export class ConsoleRecord {
  readonly tail: string[] = []
  incident: string[] | undefined

  push(line: string): void {
    this.tail.push(line)
    if (this.tail.length > TAIL) this.tail.shift()
    if (!this.incident && INCIDENT_START.test(line)) this.incident = []
    if (this.incident && this.incident.length < INCIDENT_LINES) this.incident.push(line)
  }
}

/** Splits a byte stream into lines (UTF-8 safe), calling `line` for each; `flush` emits the rest. */
export function lineSplitter(line: (l: string) => void) {
  const decoder = new StringDecoder('utf8')
  let partial = ''
  const emit = (text: string) => {
    const lines = (partial + text).split('\n')
    partial = lines.pop() ?? ''
    for (const l of lines) line(l.replace(/\r$/, ''))
  }
  return {
    push: (chunk: Buffer) => emit(decoder.write(chunk)),
    flush: () => {
      emit(`${decoder.end()}\n`)
    },
  }
}

/** A guest that stopped without a result: say what its console shows. */
export function explainSilence(tail: string[], exit: number | string | undefined): string {
  const strip = (l: string) => l.replace(/^\[[\s\d.]+\]\s*/, '')
  const lockup = tail.find((l) => /BUG: soft lockup/.test(l))
  const panic = tail.find((l) => /Kernel panic/.test(l))
  if (lockup && panic) return `the guest kernel locked up and panicked as told (softlockup_panic=1): ${strip(lockup)}; its backtraces are in the console`
  if (panic) return `the guest kernel panicked: ${strip(panic)}`
  // Printed by /init from dmesg: the guest's console is quiet (loglevel=3).
  const oom = tail.map((l) => l.match(/\bOut of memory: Killed process \d+ \(([^)]+)\)/)).find(Boolean)
  if (oom) return `the guest ran out of memory itself: its kernel killed ${oom[1]} (not an experiment's cgroup limit); give the guest more with --memory`
  const qemuErr = tail.find((l) => /^qemu-system-\w+: /.test(l))
  if (qemuErr) return `QEMU failed: ${qemuErr}`
  return `the guest stopped without reporting a result (QEMU exit ${exit})`
}
