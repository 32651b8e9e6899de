/** oomlab kernels: what can be named, and what is already in the cache. */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DEBIAN_SUITES, DEFAULT_KERNEL } from '../kernel/resolve.js'
import type { KernelImage } from '../kernel/image.js'
import { cacheDir } from '../util/paths.js'
import { builtDir } from '../kernel/build/layout.js'
import type { BuiltRecord } from '../kernel/build/build.js'

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
  const built: BuiltRecord[] = []
  for (const key of await readdir(builtDir(cacheDir())).catch(() => [] as string[])) {
    const r = await readFile(join(builtDir(cacheDir(), key), 'build.json'), 'utf8').then((t) => JSON.parse(t) as BuiltRecord, () => undefined)
    if (r) built.push(r)
  }
  if (built.length) console.log(`\nBuilt from source (--kernel-src DIR; oomlab kernel build DIR):`)
  for (const r of built.sort((a, b) => a.builtAt.localeCompare(b.builtAt))) console.log(`  ${r.release.padEnd(32)} ${r.tree}${r.commit ? ` at ${r.commit.slice(0, 12)}` : ''} (key ${r.key}, built ${r.builtAt.slice(0, 16).replace('T', ' ')} UTC)`)
  console.log('\nAlso: --kernel 6.1.0-50 (a Debian version), --kernel bookworm+memory_localevents (cgroup2 mounted with that option),')
  console.log('--kernel-image PATH (your own bzImage) or --kernel-src DIR (a source tree oomlab builds).')
  return 0
}
