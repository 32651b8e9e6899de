/**
 * KVM or TCG? /dev/kvm existing proves nothing (here a KVM guest hangs at 100% CPU), so a tiny
 * guest must really boot under KVM first. The answer is remembered per host, QEMU and kernel.
 */
import { accessSync, constants, readFileSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { qemuBuild } from './qemu/version.js'
import { which } from '../util/which.js'
import { buildInitramfs } from './image/store.js'
import { probeTree, PROBE_HELLO } from './image/recipes.js'
import type { Accel } from './qemu/command.js'
import { GuestVm } from './vm.js'
import { errorMessage } from '../util/errors.js'

/** From QEMU's start to the probe guest powering off: a KVM guest boots busybox in well under a second. */
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

async function hostKey(qemu: string, kernel: string, cache: string): Promise<string> {
  const path = qemu.includes('/') ? qemu : which(qemu)
  const version = path ? await qemuBuild(path, cache).then((b) => b.version, () => '') : ''
  const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? ''
  const host = `${readFileSync('/proc/sys/kernel/hostname', 'utf8').trim()} ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()} ${cpu} ${version} ${kernel}`
  return createHash('sha256').update(host).digest('hex').slice(0, 16)
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
  const file = join(opts.cache, 'accel', `${await hostKey(qemu, opts.kernel, opts.cache)}.json`)
  const saved = await readFile(file, 'utf8').then((t) => JSON.parse(t) as { kvm: boolean; reason: string; probedAt: string }, () => undefined)
  const known = saved && (saved.kvm || Date.now() - Date.parse(saved.probedAt) < FAILURE_TTL_MS) ? saved : undefined
  let kvm = known?.kvm
  let reason = known?.reason ?? ''
  if (kvm === undefined) {
    opts.log?.('accel: probing KVM with a tiny guest (once per host)')
    const image = await buildInitramfs(opts.cache, await probeTree(), 'probe')
    const probe = await bootProbe('kvm', qemu, opts.kernel, image.path, opts.signal)
    opts.signal?.throwIfAborted()
    kvm = probe.failure === undefined
    reason = kvm ? `a KVM guest booted in ${Math.round(probe.ms)} ms` : `a KVM guest did not boot: ${probe.failure}`
    await mkdir(join(opts.cache, 'accel'), { recursive: true })
    await writeFile(file, JSON.stringify({ kvm, reason, probedAt: new Date().toISOString() }))
  }
  if (opts.want === 'kvm' && !kvm) throw new Error(`--accel kvm: ${reason}`)
  return kvm ? { accel: 'kvm', reason, cached: known !== undefined } : { accel: 'tcg', reason: `${reason}; using TCG`, cached: known !== undefined }
}

/** Boots the probe guest: it booted when its /init said so on the console before QEMU exited, within the deadline. */
export async function bootProbe(accel: Accel, qemu: string, kernel: string, initrd: string, signal?: AbortSignal): Promise<{ ms: number; failure?: string }> {
  const t0 = performance.now()
  let vm: GuestVm | undefined
  let timer: NodeJS.Timeout | undefined
  try {
    vm = await GuestVm.boot({ qemu, kernel, initrd, accel, memoryMiB: 256, cpus: 1, append: [] }, { connectTimeoutMs: PROBE_TIMEOUT_MS, ...(signal && { signal }) })
    const booted = vm
    const inTime = await Promise.race([booted.exited.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), PROBE_TIMEOUT_MS)))])
    const ms = performance.now() - t0
    if (booted.consoleTail().some((l) => l.trim() === PROBE_HELLO)) return { ms }
    return { ms, failure: inTime ? (booted.failure() ?? 'its console did not say it booted') : `no word from it within ${PROBE_TIMEOUT_MS / 1000} s` }
  } catch (err) {
    return { ms: performance.now() - t0, failure: errorMessage(err) }
  } finally {
    clearTimeout(timer)
    await vm?.dispose()
  }
}
