/**
 * The x86 boot header of a kernel image (Documentation/arch/x86/boot.rst): whether a file is a whole
 * bzImage, and the version string it carries. The string is what a kernel given by path says of itself
 * before it boots: its release, and so its upstream version.
 */
import { open } from 'node:fs/promises'
import { errorMessage } from '../util/errors.js'

const BOOT_FLAG_OFFSET = 0x1fe // 0xAA55
const HEADER_MAGIC_OFFSET = 0x202 // "HdrS"
const KERNEL_VERSION_OFFSET = 0x20e // 16-bit pointer to the version string, minus 0x200
const SETUP_SECTS_OFFSET = 0x1f1
const SYSSIZE_OFFSET = 0x1f4 // protected-mode code size in 16-byte paragraphs
/** The version string pointer is 16 bits, so the string always lies in the first 64 KiB + 0x200. */
const HEADER_READ_BYTES = 0x10000 + 0x200 + 0x200

/**
 * The version string of an x86 bzImage ('6.1.0-50-cloud-amd64 (debian-kernel@...) #1 SMP ...'),
 * or undefined when `buf` does not start with one. Needs only the first 64 KiB of the file.
 */
export function readBzImageVersion(buf: Buffer): string | undefined {
  if (buf.length < KERNEL_VERSION_OFFSET + 2) return undefined
  if (buf.readUInt16LE(BOOT_FLAG_OFFSET) !== 0xaa55) return undefined
  if (buf.toString('latin1', HEADER_MAGIC_OFFSET, HEADER_MAGIC_OFFSET + 4) !== 'HdrS') return undefined
  const pointer = buf.readUInt16LE(KERNEL_VERSION_OFFSET)
  if (pointer === 0) return undefined
  const start = pointer + 0x200
  const end = buf.indexOf(0, start)
  if (start >= buf.length || end <= start) return undefined
  const version = buf.toString('latin1', start, end)
  // A kernel release starts with its version number; anything else is not a version string.
  if (!/^\d+\.\d+\S*( |$)/.test(version) || /[^\x20-\x7e]/.test(version)) return undefined
  return version
}

/** Bytes the header says the image has (a signed kernel has its signature appended after them). */
function bzImageMinimumSize(buf: Buffer): number {
  const setupSects = buf.readUInt8(SETUP_SECTS_OFFSET) || 4 // 0 means 4, for old boot loaders
  return (setupSects + 1) * 512 + buf.readUInt32LE(SYSSIZE_OFFSET) * 16
}

/** '6.1.0-50-cloud-amd64' of '6.1.0-50-cloud-amd64 (debian-kernel@...) #1 SMP ...'. */
export function releaseOf(versionString: string): string {
  return versionString.split(' ')[0]!
}

export type Inspection = { ok: true; versionString: string; release: string } | { ok: false; reason: string }

/** Whether `path` is a complete x86 bzImage, and its version if so; `reason` completes "PATH ...". */
export async function inspectBzImage(path: string): Promise<Inspection> {
  let head: Buffer
  let size: number
  try {
    const file = await open(path, 'r')
    try {
      size = (await file.stat()).size
      head = Buffer.alloc(Math.min(size, HEADER_READ_BYTES))
      await file.read(head, 0, head.length, 0)
    } finally {
      await file.close()
    }
  } catch (err) {
    return { ok: false, reason: `cannot be read (${errorMessage(err)})` }
  }
  const versionString = readBzImageVersion(head)
  if (versionString === undefined) return { ok: false, reason: 'is not an x86 Linux kernel image (bzImage)' }
  const expected = bzImageMinimumSize(head)
  if (size < expected) return { ok: false, reason: `is truncated (${size} bytes, its header says ${expected})` }
  return { ok: true, versionString, release: releaseOf(versionString) }
}
