/**
 * Code for the guest, compiled and bundled on the host: under TCG node is ~15x slower than natively,
 * and loading many modules or transforming TypeScript in the guest cost more than the experiments.
 */
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { projectRoot, ownModule } from '../../util/paths.js'
import { GUEST_BUNDLE } from '../in-guest/layout.js'

/** Bundled CommonJS packages (tmp-promise) still call require(). */
const REQUIRE_BANNER = "import { createRequire as __oomlabRequire } from 'node:module'; const require = __oomlabRequire(import.meta.url);"

/** The agent (src/vm/in-guest/agent.ts) as one file, by its path in the guest: every module node loads costs ~15x under TCG. */
export async function bundleAgent(): Promise<Map<string, string>> {
  const { build } = await import('esbuild')
  const out = await build({
    entryPoints: { agent: ownModule('src/vm/in-guest/agent') },
    outdir: GUEST_BUNDLE,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    write: false,
    // Paths in the bundle's comments are relative to this: the image is the same from any folder.
    absWorkingDir: projectRoot,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'silent',
    banner: { js: REQUIRE_BANNER },
  })
  return new Map(out.outputFiles.map((f) => [f.path, f.text]))
}

/**
 * Every .ts file of a host folder bundled into `guestDir`, each an entry, the code they share in chunks
 * beside them (so they see one copy of each module); `external` packages stay imports (the image carries them).
 */
export async function bundleFolder(hostDir: string, guestDir: string, external: string[]): Promise<Map<string, string>> {
  const { build } = await import('esbuild')
  const entryPoints: Record<string, string> = {}
  for (const f of (await readdir(hostDir)).filter((x) => x.endsWith('.ts')).sort()) entryPoints[f.replace(/\.ts$/, '')] = join(hostDir, f)
  const out = await build({
    entryPoints,
    outdir: guestDir,
    outExtension: { '.js': '.mjs' },
    chunkNames: '[name]-[hash]',
    bundle: true,
    splitting: true,
    write: false,
    absWorkingDir: projectRoot,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external,
    logLevel: 'silent',
    banner: { js: REQUIRE_BANNER },
  })
  return new Map(out.outputFiles.map((f) => [f.path, f.text]))
}

/**
 * Packages and what they depend on, without peer dependencies (tsx, esbuild, typescript) and without
 * lightningcss, which vite imports only to process CSS.
 */
export async function packagesWithDependencies(nodeModules: string, roots: string[]): Promise<string[]> {
  const seen = new Set<string>()
  const queue = [...roots]
  while (queue.length > 0) {
    const name = queue.pop()!
    if (seen.has(name) || LAZY_PACKAGES.test(name)) continue
    const manifest = await readFile(join(nodeModules, name, 'package.json'), 'utf8').catch(() => undefined)
    if (manifest === undefined) continue // an optional dependency for another platform
    seen.add(name)
    const p = JSON.parse(manifest) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> }
    queue.push(...Object.keys({ ...p.dependencies, ...p.optionalDependencies }))
  }
  return [...seen].sort()
}

const LAZY_PACKAGES = /^lightningcss/
