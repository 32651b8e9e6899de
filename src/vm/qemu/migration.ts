/**
 * A guest's state saved and loaded through QEMU's migration: the save goes to a file by an `exec:` helper
 * (its path quoted for sh); either way the migration is polled until done, and a saved file is whole
 * only when it ends as a stream does.
 */
import { open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { QmpClient } from './qmp.js'

/** Quotes a word for sh: the state file's path goes into QEMU's `exec:` migration URIs. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

const POLL_MS = 25

/**
 * A migration stream ends with QEMU_VM_EOF (0), then QEMU_VM_VMDESCRIPTION (6), a big-endian length
 * and that many bytes of JSON: the last thing QEMU writes. Found at the file's end, the file is whole.
 * (The pc machines send it; a machine type with suppress-vmdesc would need another check.)
 */
export async function streamComplete(path: string): Promise<boolean> {
  const fh = await open(path, 'r')
  try {
    const size = (await fh.stat()).size
    const n = Math.min(size, 4 << 20)
    const { buffer } = await fh.read({ buffer: Buffer.alloc(n), position: size - n })
    if (buffer[n - 1] !== 0x7d) return false // '}'
    for (let p = n - 6; p >= 1; p--)
      if (buffer[p] === 6 && buffer[p - 1] === 0 && buffer[p + 5] === 0x7b && buffer.readUInt32BE(p + 1) === n - p - 5) return true
    return false
  } finally {
    await fh.close()
  }
}

/** Waits until the state file ends as a whole stream does; fails at the deadline. */
export async function waitStreamEnd(path: string, deadline: number): Promise<void> {
  while (!(await streamComplete(path))) {
    if (Date.now() >= deadline) throw new Error(`${path} does not end with QEMU's device description: the state is incomplete (its writer was stopped?)`)
    await sleep(POLL_MS)
  }
}


type MigrationInfo = { status?: string; 'error-desc'?: string }

/**
 * Polls query-migrate until the migration (a save or a restore) completes; fails with QEMU's reason, or
 * `late` at the deadline. `stderr`: QEMU's last lines, where its `exec:` helper says what went wrong.
 */
export async function waitMigration(qmp: QmpClient, deadline: number, late: string, stderr: readonly string[]): Promise<void> {
  for (;;) {
    const info = await qmp.execute<MigrationInfo>('query-migrate')
    if (info.status === 'completed') return
    if (info.status === 'failed' || info.status === 'cancelled') {
      // What the `exec:` helper said (sh: cannot create, cat: No space left on device) beats QEMU's "Broken pipe".
      const helper = stderr.filter((l) => l.trim() && !/^qemu-system-\w+: /.test(l)).at(-1)
      throw new Error(`migration ${info.status}: ${info['error-desc'] ?? 'QEMU gave no reason'}${helper ? ` (${helper.trim()})` : ''}`)
    }
    if (Date.now() >= deadline) throw new Error(late)
    await sleep(POLL_MS)
  }
}
