/**
 * Boots a kernel and initramfs under QEMU with no display and no network, streams the console,
 * and collects the guest's report from the second serial port. Deadlines for boot and run; a
 * panic, a hang or a silent guest stops QEMU and says why, with the console's last lines.
 */
import { watch } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { dir as tmpDir } from 'tmp-promise'
import { decodeFrames, type Frame } from './channel.js'

export type Accel = 'kvm' | 'tcg'

export interface BootOptions {
  kernel: string
  initrd: string
  /** Extra kernel command-line words (after console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off; loglevel=3 keeps the OOM killer's lines, which the evidence has, out of the test output, and panics in it; a disposable guest needs no Spectre mitigations, and under TCG each kernel entry costs more with them). */
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
  /** Host time from QEMU start to the guest's hello. */
  bootMs?: number
  totalMs: number
  qemuExit?: number | string
}

export function qemuArgs(o: BootOptions, resultFile: string): string[] {
  const accel = o.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,thread=multi', '-cpu', 'max']
  return [
    ...accel,
    '-smp', String(o.cpus ?? 2),
    '-m', String(o.memoryMiB ?? 1536),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-nic', 'none',
    '-kernel', o.kernel,
    '-initrd', o.initrd,
    '-append', ['console=ttyS0', 'quiet', 'loglevel=3', 'panic=-1', 'mitigations=off', ...(o.append ?? [])].join(' '),
    '-serial', 'stdio',
    '-serial', `file:${resultFile}`,
  ]
}

const TAIL = 30

export async function bootGuest(o: BootOptions): Promise<GuestRun> {
  const work = await tmpDir({ prefix: 'oomlab-qemu-', unsafeCleanup: true })
  const resultFile = join(work.path, 'result')
  // Created before QEMU starts, so the watch below sees the guest's very first write.
  await writeFile(resultFile, '')
  const t0 = performance.now()
  const tail: string[] = []
  let bootMs: number | undefined
  let failure: string | undefined
  let seenFrames = 0
  const child = execa(o.qemu ?? 'qemu-system-x86_64', qemuArgs(o, resultFile), {
    stdin: 'pipe', // never written: a pipe keeps QEMU from putting a terminal into raw mode
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cleanup: true,
  })
  const stop = (why: string) => {
    failure ??= why
    child.kill('SIGKILL')
  }

  let partial = ''
  const onConsole = (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n')
    partial = lines.pop() ?? ''
    for (const raw of lines) {
      const line = raw.replace(/\r$/, '')
      tail.push(line)
      if (tail.length > TAIL) tail.shift()
      o.onConsole?.(line)
    }
  }
  child.stdout!.on('data', onConsole)
  child.stderr!.on('data', onConsole)

  const readFrames = async () => decodeFrames(await readFile(resultFile, 'utf8').catch(() => '')).frames
  const pump = async () => {
    const frames = await readFrames()
    for (const f of frames.slice(seenFrames)) {
      if (f.type === 'hello' && bootMs === undefined) {
        bootMs = performance.now() - t0
        clearTimeout(bootTimer)
      }
      o.onFrame?.(f)
    }
    seenFrames = Math.max(seenFrames, frames.length)
  }
  // Each write the guest makes is a modify event on the host file.
  const watcher = watch(resultFile, () => void pump())

  const bootTimer = setTimeout(() => stop(`the guest did not start within ${o.bootTimeoutMs / 1000} s (no hello on the result channel)`), o.bootTimeoutMs)
  const runTimer = setTimeout(() => stop(`the guest did not finish within ${o.runTimeoutMs / 1000} s: hung?`), o.runTimeoutMs)
  const onAbort = () => stop('interrupted: the guest was stopped')
  o.signal?.addEventListener('abort', onAbort)

  try {
    const r = await child
    if (partial) onConsole(Buffer.from('\n'))
    await pump()
    const frames = await readFrames()
    const result = frames.find((f) => f.type === 'result')
    if (!failure && !result) failure = explainSilence(tail, r.exitCode ?? r.signal)
    return {
      frames,
      ...(failure !== undefined && { failure }),
      consoleTail: tail,
      ...(bootMs !== undefined && { bootMs }),
      totalMs: performance.now() - t0,
      ...((r.exitCode ?? r.signal) !== undefined && { qemuExit: r.exitCode ?? r.signal }),
    }
  } finally {
    clearTimeout(bootTimer)
    clearTimeout(runTimer)
    o.signal?.removeEventListener('abort', onAbort)
    watcher.close()
    await work.cleanup()
  }
}

/** A guest that stopped without a result: say what its console shows. */
export function explainSilence(tail: string[], exit: number | string | undefined): string {
  const panic = tail.find((l) => /Kernel panic/.test(l))
  if (panic) return `the guest kernel panicked: ${panic.replace(/^\[[\s\d.]+\]\s*/, '')}`
  const qemuErr = tail.find((l) => /^qemu-system-\w+: /.test(l))
  if (qemuErr) return `QEMU failed: ${qemuErr}`
  return `the guest stopped without reporting a result (QEMU exit ${exit})`
}
