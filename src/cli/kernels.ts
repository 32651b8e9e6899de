/** oomlab kernels: what can be named, and what is already in the cache. */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DEBIAN_SUITES, DEFAULT_KERNEL } from '../kernel/resolve.js'
import type { KernelImage } from '../kernel/image.js'
import { cacheDir } from '../util/paths.js'

export async function listKernels(): Promise<number> {
  console.log('Debian suites (--kernel NAME):')
  for (const s of DEBIAN_SUITES) console.log(`  ${s.name.padEnd(20)} ${s.note}${s.name === DEFAULT_KERNEL && !s.note.includes('default') ? ' (default)' : ''}`)
  const dir = join(cacheDir(), 'kernels')
  const cached: KernelImage[] = []
  for (const d of await readdir(dir).catch(() => [] as string[])) {
    const k = await readFile(join(dir, d, 'kernel.json'), 'utf8').then((t) => JSON.parse(t) as KernelImage, () => undefined)
    if (k) cached.push(k)
  }
  console.log(`\nIn the cache (${dir}):`)
  if (cached.length === 0) console.log('  none yet')
  for (const k of cached) console.log(`  ${k.release.padEnd(32)} ${k.debianPackage ?? ''} ${k.debianVersion ?? ''}`)
  console.log('\nAlso: --kernel 6.1.0-50 (a Debian version) or --kernel-image PATH (your own bzImage).')
  return 0
}
