/**
 * A writer for the "newc" cpio format the kernel unpacks as an initramfs
 * (Documentation/driver-api/early-userspace/buffer-format.rst). Files are streamed from where
 * they are on the host, so building an image copies nothing into a staging tree.
 */
import { open, type FileHandle } from 'node:fs/promises'

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number; uid?: number; gid?: number }
  | { type: 'file'; path: string; source: string; mode: number; size: number }
  | { type: 'data'; path: string; data: Buffer | string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number }

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000

const hex8 = (n: number) => n.toString(16).padStart(8, '0')
const pad4 = (n: number) => (4 - (n % 4)) % 4

function header(ino: number, mode: number, uid: number, gid: number, size: number, name: string, rdev: [number, number] = [0, 0]): Buffer {
  const nameBytes = Buffer.from(`${name}\0`)
  const fields = [ino, mode, uid, gid, 1, 0, size, 0, 0, rdev[0], rdev[1], nameBytes.length, 0]
  const head = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii')
  return Buffer.concat([head, nameBytes, Buffer.alloc(pad4(head.length + nameBytes.length))])
}

/** Writes the entries, in order, and the trailer to `out`. Parents must come before children. */
export async function writeCpio(out: string, entries: Iterable<CpioEntry>, onBytes?: (written: number) => void): Promise<number> {
  // A buffer per image: two images written at once (a matrix prepares kernels in parallel) must not share one.
  const chunk = Buffer.alloc(1 << 20)
  const fh = await open(out, 'w')
  let written = 0
  const put = async (b: Buffer) => {
    await fh.write(b)
    written += b.length
    onBytes?.(written)
  }
  let ino = 1
  try {
    for (const e of entries) {
      const name = e.path.replace(/^\/+/, '') || '.'
      switch (e.type) {
        case 'dir':
          await put(header(ino++, S_IFDIR | (e.mode ?? 0o755), e.uid ?? 0, e.gid ?? 0, 0, name))
          break
        case 'symlink': {
          const data = Buffer.from(e.target)
          await put(header(ino++, S_IFLNK | 0o777, 0, 0, data.length, name))
          await put(Buffer.concat([data, Buffer.alloc(pad4(data.length))]))
          break
        }
        case 'chardev':
          await put(header(ino++, S_IFCHR | (e.mode ?? 0o600), 0, 0, 0, name, [e.major, e.minor]))
          break
        case 'data': {
          const data = Buffer.from(e.data)
          await put(header(ino++, S_IFREG | (e.mode ?? 0o644), 0, 0, data.length, name))
          await put(Buffer.concat([data, Buffer.alloc(pad4(data.length))]))
          break
        }
        case 'file':
          await put(header(ino++, S_IFREG | (e.mode & 0o7777), 0, 0, e.size, name))
          await copyInto(fh, e.source, e.size, chunk)
          written += e.size
          await put(Buffer.alloc(pad4(e.size)))
          break
      }
    }
    await put(header(0, 0, 0, 0, 0, 'TRAILER!!!'))
  } finally {
    await fh.close()
  }
  return written
}

async function copyInto(fh: FileHandle, source: string, size: number, chunk: Buffer): Promise<void> {
  const src = await open(source, 'r')
  try {
    let left = size
    while (left > 0) {
      const { bytesRead } = await src.read(chunk, 0, Math.min(chunk.length, left), null)
      if (bytesRead === 0) throw new Error(`${source} shrank while being copied into the initramfs`)
      await fh.write(chunk, 0, bytesRead)
      left -= bytesRead
    }
  } finally {
    await src.close()
  }
}
