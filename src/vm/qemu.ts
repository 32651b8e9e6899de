/**
 * Boots a kernel and initramfs under QEMU with no display and no network, streams the console,
 * and collects the guest's report from the second serial port. Deadlines for boot and run; a
 * panic, a hang or a silent guest stops QEMU and says why, with the console's last lines.
 */
import { watch } from 'node:fs'
import { open, writeFile } from 'node:fs/promises'
import { StringDecoder } from 'node:string_decoder'
import { join } from 'node:path'
import { execa } from 'execa'
import { dir as tmpDir } from 'tmp-promise'
import { decodeFrames, type Frame } from './channel.js'

export type Accel = 'kvm' | 'tcg'

export interface BootOptions {
  kernel: string
  initrd: string
  /** Extra kernel command-line words, after BASE_CMDLINE. */
  append?: string[]
  memoryMiB?: number
  cpus?: number
  accel: Accel
  /** From QEMU start to the guest's hello frame. */
  bootTimeoutMs: number
  /** From QEMU start to its exit. */
  runTimeoutMs: number
  onConsole?: (line: string) => void
  onFrame?: (f: Frame) => void
  signal?: AbortSignal
  qemu?: string
}

export interface GuestRun {
  frames: Frame[]
  /** Why the run failed, in one line; undefined when the guest reported a result. */
  failure?: string
  consoleTail: string[]
  /** The console from the guest kernel's first "BUG:" or panic line on (its backtraces), if any. */
  incident?: string[]
  /** Host time from QEMU start to the guest's hello. */
  bootMs?: number
  totalMs: number
  qemuExit?: number | string
}

/**
 * loglevel=3 keeps the OOM killer's lines, which the evidence has, out of the test output, and panics
 * in it. A disposable guest needs no Spectre mitigations, and under TCG each kernel entry costs more
 * with them. A soft lockup panics at once instead of hanging to the run's deadline, with every CPU's
 * backtrace and, replayed, the whole kernel log (panic_print=0x20), so the report says where it was stuck.
 * printk.devkmsg=on: the harness's own records (markers, barriers) are not rate-limited to 10 per 5 s.
 */
export const BASE_CMDLINE = ['console=ttyS0', 'quiet', 'loglevel=3', 'panic=-1', 'mitigations=off', 'softlockup_panic=1', 'softlockup_all_cpu_backtrace=1', 'panic_print=0x20', 'printk.devkmsg=on']

/**
 * The CPU a TCG guest sees (OOMLAB_TCG_CPU names another model). Without ERMS the guest kernel clears
 * and copies pages with `rep stosq`/`movsq` instead of byte-wise `rep stosb`/`movsb`, which TCG runs
 * an iteration at a time: the hog's 192 MB cost less emulated work. `npm start`, 5 pairs against plain
 * max: wall 0.95x (0.82-0.98), CPU 0.96x.
 */
export const TCG_CPU = process.env.OOMLAB_TCG_CPU || 'max,erms=off'

/** How TCG runs the guest's vCPUs (OOMLAB_TCG_ACCEL for another setting, e.g. tcg,thread=single). */
export const TCG_ACCEL = process.env.OOMLAB_TCG_ACCEL || 'tcg,thread=multi'

export function qemuArgs(o: BootOptions, resultFile: string): string[] {
  const accel = o.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', TCG_ACCEL, '-cpu', TCG_CPU]
  return [
    ...accel,
    '-smp', String(o.cpus ?? 2),
    '-m', String(o.memoryMiB ?? 1536),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-nic', 'none',
    '-kernel', o.kernel,
    '-initrd', o.initrd,
    '-append', [...BASE_CMDLINE, ...(o.append ?? [])].join(' '),
    '-serial', 'stdio',
    '-serial', `file:${resultFile}`,
  ]
}

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

/** After the result frame, how long the guest gets to power off before QEMU is stopped (not a failure). */
const LINGER_MS = 15_000

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

export async function bootGuest(o: BootOptions): Promise<GuestRun> {
  o.signal?.throwIfAborted()
  const work = await tmpDir({ prefix: 'oomlab-qemu-', unsafeCleanup: true })
  const resultFile = join(work.path, 'result')
  // Created before QEMU starts, so the watch below sees the guest's very first write.
  await writeFile(resultFile, '')
  const t0 = performance.now()
  const record = new ConsoleRecord()
  const frames: Frame[] = []
  let bootMs: number | undefined
  let failure: string | undefined
  const child = execa(o.qemu ?? 'qemu-system-x86_64', qemuArgs(o, resultFile), {
    stdin: 'pipe', // never written: a pipe keeps QEMU from putting a terminal into raw mode
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cleanup: true,
  })
  const stop = (why: string | undefined) => {
    if (why) failure ??= why
    child.kill('SIGKILL')
  }

  const onLine = (line: string) => {
    record.push(line)
    o.onConsole?.(line)
  }
  const consoles = [child.stdout!, child.stderr!].map((stream) => {
    const split = lineSplitter(onLine)
    stream.on('data', split.push)
    return split
  })

  // The channel is read from where the last read stopped; reads never overlap.
  let offset = 0
  let reading: Promise<void> = Promise.resolve()
  let lingerTimer: NodeJS.Timeout | undefined
  let cutFrame: string | undefined
  let flushing = false
  const channel = lineSplitter((line) => {
    const [f] = decodeFrames(line).frames
    if (!f) {
      // Only the piece left without its newline at the end is a frame cut off.
      if (flushing && line) cutFrame = line
      return
    }
    frames.push(f)
    if (f.type === 'hello' && bootMs === undefined) {
      bootMs = performance.now() - t0
      clearTimeout(bootTimer)
    }
    if ((f.type === 'result' || f.type === 'error') && !lingerTimer) lingerTimer = setTimeout(() => stop(undefined), LINGER_MS)
    o.onFrame?.(f)
  })
  const pump = () =>
    (reading = reading.then(async () => {
      const fh = await open(resultFile, 'r')
      try {
        for (;;) {
          const { bytesRead, buffer } = await fh.read({ buffer: Buffer.alloc(1 << 16), position: offset })
          if (bytesRead === 0) break
          offset += bytesRead
          channel.push(buffer.subarray(0, bytesRead))
        }
      } finally {
        await fh.close()
      }
    }))
  // Each write the guest makes is a modify event on the host file.
  const watcher = watch(resultFile, () => void pump())
  watcher.on('error', () => undefined) // the final read below does not depend on it

  const bootTimer = setTimeout(() => stop(`the guest did not start within ${o.bootTimeoutMs / 1000} s (no hello on the result channel)`), o.bootTimeoutMs)
  const runTimer = setTimeout(() => stop(`the guest did not finish within ${o.runTimeoutMs / 1000} s: hung?`), o.runTimeoutMs)
  const onAbort = () => stop('interrupted: the guest was stopped')
  o.signal?.addEventListener('abort', onAbort)
  if (o.signal?.aborted) onAbort()

  try {
    const r = await child
    for (const c of consoles) c.flush()
    await pump()
    flushing = true
    channel.flush() // a last line without its newline: a frame cut off
    await reading
    const error = frames.find((f) => f.type === 'error')
    if (!failure && !frames.some((f) => f.type === 'result'))
      failure = error
        ? `the guest agent failed: ${error.message.split('\n')[0]}`
        : cutFrame !== undefined
          ? `the result channel was cut off in the middle of a frame (${cutFrame.length} bytes: ${JSON.stringify(cutFrame.slice(0, 40))}...); ${explainSilence(record.tail, r.exitCode ?? r.signal)}`
          : explainSilence(record.incident ?? record.tail, r.exitCode ?? r.signal)
    return {
      frames,
      ...(failure !== undefined && { failure }),
      consoleTail: record.tail,
      ...(record.incident && { incident: record.incident }),
      ...(bootMs !== undefined && { bootMs }),
      totalMs: performance.now() - t0,
      ...((r.exitCode ?? r.signal) !== undefined && { qemuExit: r.exitCode ?? r.signal }),
    }
  } finally {
    clearTimeout(bootTimer)
    clearTimeout(runTimer)
    clearTimeout(lingerTimer)
    o.signal?.removeEventListener('abort', onAbort)
    watcher.close()
    await reading.catch(() => undefined)
    await work.cleanup()
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
