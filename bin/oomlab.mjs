#!/usr/bin/env node
// From the repository, the TypeScript CLI bundled by esbuild into node_modules/.cache/oomlab-cli, again only
// when a source file changed (tsx's loader cost ~0.45 s on every start); from the installed package, its
// compiled copy in dist/ (the package ships no sources).
import { existsSync, readdirSync, statSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** The packages bundled into the CLI (each with its dependencies); the others are imported from node_modules. */
const INLINED = new Set(['execa', 'tmp-promise', 'birpc'])

const root = fileURLToPath(new URL('..', import.meta.url))
const main = join(root, 'src/cli/main.ts')

if (!existsSync(main)) {
  await import('../dist/src/cli/main.js')
} else {
  // The bundle has this checkout's root in it: a copy of the checkout (cp -a keeps names, sizes and mtimes) gets its own.
  const key = createHash('sha256').update(`${root}\n`)
  for (const f of readdirSync(join(root, 'src'), { recursive: true }).map(String).sort()) {
    const st = statSync(join(root, 'src', f))
    key.update(`${f} ${st.size} ${st.mtimeMs}\n`)
  }
  const dir = join(root, 'node_modules/.cache/oomlab-cli')
  const bundle = join(dir, `main-${key.digest('hex').slice(0, 16)}.mjs`)
  if (!existsSync(bundle)) await bundleCli(bundle, dir).catch(() => undefined)
  if (existsSync(bundle)) {
    await import(pathToFileURL(bundle).href)
  } else {
    // No bundle (node_modules not writable here, or esbuild failed and said why): the sources through tsx.
    const { register } = await import('tsx/esm/api')
    register()
    await import(pathToFileURL(main).href)
  }
}

async function bundleCli(bundle, dir) {
  const { build } = await import('esbuild')
  mkdirSync(dir, { recursive: true })
  const partial = `${bundle}.${process.pid}.partial`
  try {
    await build({
      entryPoints: [main],
      outfile: partial,
      bundle: true,
      // execa and the other small packages the CLI starts with, with their own dependencies, go into the bundle:
      // one file reads faster than their ~150 modules (~0.1 s of every start); vitest, vite and esbuild stay imports.
      plugins: [{ name: 'packages', setup: (b) => b.onResolve({ filter: /^[^./]/ }, (a) => (a.path.startsWith('node:') || (!/[\\/]node_modules[\\/]/.test(a.importer) && !INLINED.has(a.path)) ? { path: a.path, external: true } : undefined)) }],
      // The bundled CommonJS packages (tmp) require node's modules.
      banner: { js: "import { createRequire as __oomlabRequire } from 'node:module'; const require = __oomlabRequire(import.meta.url);" },
      format: 'esm',
      platform: 'node',
      target: 'node20',
      logLevel: 'warning',
      // src/util/paths.ts finds the project (and its .ts modules) from its own URL: the only import.meta.url
      // in the CLI's sources (test/cli-bundle.test.ts keeps it so).
      define: { 'import.meta.url': JSON.stringify(pathToFileURL(join(root, 'src/util/paths.ts')).href) },
    })
    renameSync(partial, bundle)
  } finally {
    rmSync(partial, { force: true })
  }
  // Older bundles go; another start's build in progress (.partial) is left to finish.
  for (const f of readdirSync(dir)) if (f.endsWith('.mjs') && join(dir, f) !== bundle) rmSync(join(dir, f), { force: true })
}
