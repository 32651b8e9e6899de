/**
 * KVM or TCG? /dev/kvm existing proves nothing (here a KVM guest hangs at 100% CPU), so a tiny
 * guest must really boot under KVM first. The answer is remembered per host, QEMU and kernel.
 */
import { accessSync, constants, readFileSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { execa } from 'execa'
import { ImageTree, buildInitramfs, staticBusybox } from './initramfs.js'
import { bootGuest, type Accel } from './qemu.js'
import { encodeFrame } from './channel.js'

const PROBE_TIMEOUT_MS = 15_000

export interface AccelChoice {
  accel: Accel
  reason: string
  cached: boolean
}

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK)
    return true
  } catch {
    return false
  }
}

async function hostKey(qemu: string, kernel: string): Promise<string> {
  const version = String((await execa(qemu, ['--version'], { reject: false })).stdout).split('\n')[0]
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? ''
  const host = `${readFileSync('/proc/sys/kernel/hostname', 'utf8').trim()} ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()} ${cpu} ${version} ${kernel}`
  return createHash('sha256').update(host).digest('hex').slice(0, 16)
}

/** A busybox-only guest whose /init says hello on the result channel and reboots. */
async function probeTree(): Promise<ImageTree> {
  const t = new ImageTree()
  await t.file(await staticBusybox(), '/bin/busybox')
  for (const a of ['sh', 'mount', 'echo', 'reboot', 'cat']) t.symlink(`/bin/${a}`, 'busybox')
  t.dir('/proc')
  t.dir('/dev')
  t.chardev('/dev/console', 5, 1)
  const hello = encodeFrame({ type: 'hello', release: 'probe', version: 'probe', uptimeMs: 0 }).trim()
  t.data('/init', `#!/bin/sh\nmount -t devtmpfs devtmpfs /dev\necho '${hello}' > /dev/ttyS1\necho '${encodeFrame({ type: 'result', exitCode: 0, passed: 0, failed: 0, skipped: 0, vitestMs: 0, uptimeMs: 0, leftovers: [] }).trim()}' > /dev/ttyS1\nreboot -f\n`, 0o755)
  return t
}

/** A failed probe is trusted for a day: long enough not to pay for it on every run, short enough that a busy host's timeout does not pin TCG forever. */
const FAILURE_TTL_MS = 24 * 3600 * 1000

export async function chooseAccel(opts: { want: 'auto' | Accel; cache: string; kernel: string; qemu?: string; log?: (s: string) => void; signal?: AbortSignal }): Promise<AccelChoice> {
  if (opts.want === 'tcg') return { accel: 'tcg', reason: 'asked for', cached: false }
  if (!kvmUsable()) {
    if (opts.want === 'kvm') throw new Error('--accel kvm: /dev/kvm is missing or not accessible')
    return { accel: 'tcg', reason: '/dev/kvm is not available', cached: false }
  }
  const qemu = opts.qemu ?? 'qemu-system-x86_64'
  const file = join(opts.cache, 'accel', `${await hostKey(qemu, opts.kernel)}.json`)
  const saved = await readFile(file, 'utf8').then((t) => JSON.parse(t) as { kvm: boolean; reason: string; probedAt: string }, () => undefined)
  const known = saved && (saved.kvm || Date.now() - Date.parse(saved.probedAt) < FAILURE_TTL_MS) ? saved : undefined
  let kvm = known?.kvm
  let reason = known?.reason ?? ''
  if (kvm === undefined) {
    opts.log?.('accel: probing KVM with a tiny guest (once per host)')
    const image = await buildInitramfs(opts.cache, await probeTree(), 'probe')
    const run = await bootGuest({ kernel: opts.kernel, initrd: image.path, accel: 'kvm', bootTimeoutMs: PROBE_TIMEOUT_MS, runTimeoutMs: PROBE_TIMEOUT_MS, memoryMiB: 256, cpus: 1, qemu, ...(opts.signal && { signal: opts.signal }) })
    opts.signal?.throwIfAborted()
    kvm = run.failure === undefined
    reason = kvm ? `a KVM guest booted in ${Math.round(run.bootMs ?? 0)} ms` : `a KVM guest did not boot: ${run.failure}`
    await mkdir(join(opts.cache, 'accel'), { recursive: true })
    await writeFile(file, JSON.stringify({ kvm, reason, probedAt: new Date().toISOString() }))
  }
  if (opts.want === 'kvm' && !kvm) throw new Error(`--accel kvm: ${reason}`)
  return kvm ? { accel: 'kvm', reason, cached: known !== undefined } : { accel: 'tcg', reason: `${reason}; using TCG`, cached: known !== undefined }
}
