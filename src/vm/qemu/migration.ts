/**
 * A guest's state saved through QEMU's migration: to a file by an `exec:` helper (its path quoted for
 * sh), and how to tell that the file holds the whole stream.
 */
import { open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'

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

