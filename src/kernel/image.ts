/**
 * A kernel to boot, as the rest of the project sees it: where its image is, what it says of itself,
 * and where it came from (a Debian package fetched into the cache, a bzImage the user gives, or one
 * oomlab built from a source tree).
 */
import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { UserError } from '../util/errors.js'
import { inspectBzImage } from './bzimage.js'
import type { VirtioSupport } from './virtio.js'

export interface KernelImage {
  /** What the user asked for: 'bookworm', '6.1.0-50', or the image path. */
  name: string
  /** Kernel release read from the bzImage header, e.g. '6.1.0-50-cloud-amd64'. */
  release: string
  /** Full version string from the bzImage header. */
  versionString: string
  /** Absolute path of the vmlinuz. */
  path: string
  source: 'debian' | 'file' | 'build'
  /** Debian suite it came from. */
  suite?: string
  /** e.g. 'linux-image-6.1.0-50-cloud-amd64' (in sid the vmlinuz itself ships in linux-binary-*). */
  debianPackage?: string
  /** Package version, e.g. '6.1.158-1'. */
  debianVersion?: string
  /** How a guest of this kernel gets virtio-serial, the agent's fast channel (unknown for a bzImage given by path: the UART then). */
  virtio?: VirtioSupport['kind']
  /** For kind 'modules': a cpio of the modules to load, to go after the guest's image. */
  virtioModules?: string
  /** The initramfs compressions it unpacks, when its configuration is known (a kernel oomlab built). */
  initramfs?: ('gzip' | 'zstd')[]
}

/** The kernel for --kernel-image PATH. */
export async function kernelFromImage(path: string, name?: string): Promise<KernelImage> {
  const absolute = resolve(path)
  const info = await stat(absolute).catch(() => undefined)
  if (!info) throw new UserError(`${path} does not exist: give the path of a kernel image (vmlinuz/bzImage)`)
  if (!info.isFile()) throw new UserError(`${path} is not a file: give the path of a kernel image (vmlinuz/bzImage)`)
  const inspection = await inspectBzImage(absolute)
  if (!inspection.ok) throw new UserError(`${path} ${inspection.reason}`)
  return {
    name: name ?? path,
    release: inspection.release,
    versionString: inspection.versionString,
    path: absolute,
    source: 'file',
  }
}
