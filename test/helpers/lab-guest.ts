/** For tests that restore lab guests: why they cannot run here, or '' when they can. */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cacheDir } from '../../src/util/paths.js'
import { which } from '../../src/util/which.js'

/** The suite's kernel is in the cache (the note and the file it names: the cache may have evicted it). */
function cachedKernel(suite: string): boolean {
  try {
    const { release } = JSON.parse(readFileSync(join(cacheDir(), 'kernels/suites', `${suite}.json`), 'utf8')) as { release: string }
    return existsSync(join(cacheDir(), 'kernels', release, 'vmlinuz'))
  } catch {
    return false
  }
}

export function labGuestSkipReason(): string {
  return !which('qemu-system-x86_64')
    ? 'qemu-system-x86_64 is not installed'
    : process.getuid?.() !== 0
      ? 'needs root'
      : !cachedKernel('bookworm')
        ? `no bookworm kernel cached in ${cacheDir()} yet; any run that boots a guest fetches it`
        : ''
}
