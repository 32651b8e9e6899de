/**
 * The disposable VM as a whole: pick the kernel, build (or reuse) the guest userland, choose KVM
 * or TCG, boot, stream the console, and bring back the guest's result and evidence.
 */
import { resolveKernel, DEFAULT_KERNEL } from '../kernel/resolve.js'
import { kernelFromImage, type KernelImage } from '../kernel/image.js'
import { guestTree, buildInitramfs, type Initramfs } from './initramfs.js'
import { chooseAccel, type AccelChoice } from './accel.js'
import { bootGuest, type GuestRun } from './qemu.js'
import { encodeGuestConfig, GUEST_WORKERS } from './guest/config.js'
import type { Frame } from './channel.js'
import { cacheDir } from '../util/paths.js'
import { UserError } from '../util/errors.js'
import { which } from '../util/which.js'

export interface VmOptions {
  /** Suite name or Debian kernel version (default bookworm). */
  kernel?: string
  /** A bzImage the user built; wins over `kernel`. */
  kernelImage?: string
  accel?: 'auto' | 'kvm' | 'tcg'
  memoryMiB?: number
  cpus?: number
  /** Extra kernel command-line words. */
  append?: string[]
  bootTimeoutMs?: number
  runTimeoutMs?: number
  /** Spec filters passed to vitest in the guest. */
  filters?: string[]
  /** Environment for the specs in the guest. */
  env?: Record<string, string>
  /** Spec files run at once in the guest (default GUEST_WORKERS). */
  workers?: number
  /** Time the article's experiments as a shell script before the specs (oomlab bench). */
  baseline?: boolean
  suite?: 'experiments' | 'faults'
  fault?: 'cut-channel' | 'exhaust-memory'
  refresh?: boolean
  /** An image built beforehand (a matrix builds one for all its kernels). */
  initramfs?: Initramfs
  log?: (line: string) => void
  onConsole?: (line: string) => void
  signal?: AbortSignal
}

export interface VmResult {
  kernel: KernelImage
  accel: AccelChoice
  initramfs: Initramfs
  run: GuestRun
  hello?: Extract<Frame, { type: 'hello' }>
  result?: Extract<Frame, { type: 'result' }>
  guestError?: string
  files: Map<string, string>
  /** Host milliseconds spent on each step. */
  timings: { kernelMs: number; initramfsMs: number; accelMs: number; bootMs?: number; guestRunMs?: number; totalMs: number }
}

// Hello comes 9-20 s after QEMU starts here (20 s with two guests on two cores).
export const VM_DEFAULTS = { memoryMiB: 1536, cpus: 2, bootTimeoutMs: 60_000, runTimeoutMs: 600_000 }

export async function runInVm(o: VmOptions): Promise<VmResult> {
  const log = o.log ?? (() => {})
  const qemu = which('qemu-system-x86_64')
  if (!qemu) throw new UserError('qemu-system-x86_64 is missing: the experiments need a VM on this host; install it with `apt-get install qemu-system-x86`')
  const cache = cacheDir()
  const t0 = performance.now()

  const kernel = o.kernelImage
    ? await kernelFromImage(o.kernelImage)
    : await resolveKernel(o.kernel ?? DEFAULT_KERNEL, { cacheDir: cache, log, ...(o.refresh && { refresh: true }), ...(o.signal && { signal: o.signal }) })
  o.signal?.throwIfAborted()
  const t1 = performance.now()
  log(`kernel: ${kernel.release} (${kernel.source === 'debian' ? `Debian ${kernel.debianPackage} ${kernel.debianVersion}` : kernel.path})`)

  const initramfs = o.initramfs ?? (await buildInitramfs(cache, await guestTree()))
  o.signal?.throwIfAborted()
  const t2 = performance.now()
  log(`initramfs: ${initramfs.reused ? 'reused' : initramfs.rebuiltBecause ? `rebuilt (the cached one failed its check: ${initramfs.rebuiltBecause})` : 'built'} ${(initramfs.bytes / 1e6).toFixed(0)} MB in ${(initramfs.ms / 1000).toFixed(1)} s (${initramfs.path})`)

  const accel = await chooseAccel({ want: o.accel ?? 'auto', cache, kernel: kernel.path, qemu, log, ...(o.signal && { signal: o.signal }) })
  o.signal?.throwIfAborted()
  const t3 = performance.now()
  log(`accel: ${accel.accel} (${accel.reason}${accel.cached ? ', remembered' : ''})`)

  const memoryMiB = o.memoryMiB ?? VM_DEFAULTS.memoryMiB
  const cpus = o.cpus ?? VM_DEFAULTS.cpus
  log(`booting ${kernel.release} under QEMU (${accel.accel}, ${cpus} vCPUs, ${memoryMiB} MiB)`)
  const files = new Map<string, string>()
  let hello: VmResult['hello']
  let result: VmResult['result']
  let guestError: string | undefined
  const boot = () =>
    bootGuest({
      kernel: kernel.path,
      initrd: initramfs.path,
      accel: accel.accel,
      memoryMiB,
      cpus,
      append: [...(o.append ?? []), encodeGuestConfig({ filters: o.filters ?? [], env: o.env ?? {}, workers: o.workers ?? GUEST_WORKERS, baseline: o.baseline ?? false, suite: o.suite ?? 'experiments', ...(o.fault && { fault: o.fault }), deadlineMs: Math.max(10_000, (o.runTimeoutMs ?? VM_DEFAULTS.runTimeoutMs) - 25_000) })],
      bootTimeoutMs: o.bootTimeoutMs ?? VM_DEFAULTS.bootTimeoutMs,
      runTimeoutMs: o.runTimeoutMs ?? VM_DEFAULTS.runTimeoutMs,
      qemu,
      ...(o.onConsole && { onConsole: o.onConsole }),
      ...(o.signal && { signal: o.signal }),
      onFrame: (f) => {
        if (f.type === 'hello') {
          hello = f
          log(`guest up: kernel ${f.release}, ${(f.uptimeMs / 1000).toFixed(1)} s of guest uptime`)
        } else if (f.type === 'file') files.set(f.name, f.content)
        else if (f.type === 'result') result = f
        else if (f.type === 'error') guestError = f.message
      },
    })
  let run = await boot()
  // Under TCG here a guest has, rarely (once in ~70 boots in one session), stalled before printing anything: boot it again,
  // once, and say so. A guest that printed something and then stopped is not retried.
  if (!hello && /^the guest did not start within/.test(run.failure ?? '') && run.consoleTail.every((l) => l.trim() === '') && !o.signal?.aborted) {
    log(`${run.failure}, with a silent console; booting it once more`)
    run = await boot()
  }
  const totalMs = performance.now() - t0
  return {
    kernel,
    accel,
    initramfs,
    run,
    ...(hello && { hello }),
    ...(result && { result }),
    ...(guestError !== undefined && { guestError }),
    files,
    timings: {
      kernelMs: t1 - t0,
      initramfsMs: t2 - t1,
      accelMs: t3 - t2,
      ...(run.bootMs !== undefined && { bootMs: run.bootMs, guestRunMs: run.totalMs - run.bootMs }),
      totalMs,
    },
  }
}

/** Why a VM run as a whole did not give a verdict, beyond failed specs; undefined when it did. */
export function vmRunFailure(vm: VmResult): string | undefined {
  const r = vm.result
  if (vm.run.failure) return vm.run.failure
  if (!r) return 'the guest reported no result'
  if (r.leftovers.length) return `left behind in the guest after teardown: ${r.leftovers.join(', ')}`
  if (r.passed + r.failed + r.skipped === 0) return 'the guest ran no experiment (check the spec filter)'
  if (r.exitCode !== 0 && r.failed === 0) return 'vitest in the guest failed without a failed test (a spec file that did not load?)'
  return undefined
}
