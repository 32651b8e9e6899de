/**
 * A guest's temp folder (its sockets) named after the process that owns it (pid, start time, pid
 * namespace), so that one left by a run killed outright (SIGKILL: its QEMU died with it) is recognised
 * and removed by the next, and never another live run's.
 */
import { readdirSync, rmSync, lstatSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise'
import { selfOwner, ownerIsGone } from '../proc/owner.js'

const VM_DIR = 'oomlab-vm-'

/** A guest's temp folder (its sockets), named after its owner: a run killed outright leaves it to the next. */
export async function ownedTempDir(): Promise<DirectoryResult> {
  const o = selfOwner()
  return tmpDir({ prefix: `${VM_DIR}${o.pid}-${o.startTime.toString(36)}-${o.pidns.toString(36)}-`, unsafeCleanup: true })
}

/** Removes the temp folders of guests whose owner is gone (killed with SIGKILL: its QEMU died with it). */
export function reapStaleVmDirs(say: (line: string) => void = () => undefined): string[] {
  const reaped: string[] = []
  const ours = selfOwner().pidns
  for (const f of readdirSync(tmpdir())) {
    const m = f.startsWith(VM_DIR) ? f.slice(VM_DIR.length).match(/^(\d+)-([0-9a-z]+)-([0-9a-z]+)-/) : null
    if (!m) continue
    const owner = { pid: Number(m[1]), startTime: parseInt(m[2]!, 36), pidns: parseInt(m[3]!, 36) }
    if (owner.pidns !== ours || !ownerIsGone(owner)) continue
    const path = join(tmpdir(), f)
    const st = lstatSync(path, { throwIfNoEntry: false })
    if (!st?.isDirectory() || st.uid !== process.getuid?.()) continue
    rmSync(path, { recursive: true, force: true })
    reaped.push(path)
    say(`removed stale guest folder ${path} left by an interrupted run`)
  }
  return reaped
}
