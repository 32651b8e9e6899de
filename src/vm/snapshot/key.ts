/**
 * What a snapshot is a snapshot of: a saved state fits one QEMU build and one exact machine (its
 * arguments, the kernel and initrd by content, under KVM the host's CPU), so its key hashes all of them.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { machineArgs, type MachineSpec } from '../qemu/command.js'
import { qemuBuild } from '../qemu/version.js'
import { UserError } from '../../util/errors.js'
import { which } from '../../util/which.js'

export interface SnapshotIds {
  /** Stand for the kernel and initrd paths in the key: a content hash, a release, a version. */
  kernelId: string
  initrdId: string
  /** From qemuBuildId(). */
  qemuId: string
}

/** The words a snapshot depends on: the machine with kernel and initrd by id, the QEMU build, the host CPU under KVM. */
export function keyInputs(spec: MachineSpec, ids: SnapshotIds): string[] {
  const args = machineArgs(spec).map((a) => (a === spec.kernel ? `kernel:${ids.kernelId}` : a === spec.initrd ? `initrd:${ids.initrdId}` : a))
  // Under KVM the guest sees the host's CPU (-cpu host): a state may not load on another model.
  // How the state holds the RAM: in the stream (a state whose RAM was in a file beside it is another format).
  return [...args, 'ram:stream', `qemu:${ids.qemuId}`, ...(spec.accel === 'kvm' ? [`cpu:${hostCpuModel()}`] : [])]
}

export function snapshotKey(spec: MachineSpec, ids: SnapshotIds): string {
  return createHash('sha256').update(JSON.stringify(keyInputs(spec, ids))).digest('hex').slice(0, 24)
}

function hostCpuModel(): string {
  return readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? 'unknown'
}

/** `qemu --version`'s first line plus the binary's size and mtime: a rebuilt QEMU of the same version differs. */
export async function qemuBuildId(qemu: string, cacheDir?: string): Promise<string> {
  const path = qemu.includes('/') ? qemu : which(qemu)
  if (!path) throw new UserError(`${qemu} is not installed: apt-get install qemu-system-x86`)
  const b = await qemuBuild(path, cacheDir)
  return `${b.version} size=${b.size} mtime=${Math.round(b.mtimeMs)}`
}
