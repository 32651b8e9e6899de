import { homedir } from 'node:os'
import { join, resolve, dirname, extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

/**
 * The harness's own root: the repository, or `dist/` of the installed package, which is laid out the same
 * way (src/, experiments/, vitest.config). Not where reports go: those are the user's (`reports/` of the
 * folder the command runs in).
 */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** '.ts' when run from the sources (tsx, vitest), '.js' in the compiled package. */
const moduleExt = extname(fileURLToPath(import.meta.url))

/** The installed package's folder (package.json, bin/): the repository itself, or the parent of `dist/`. */
export const packageRoot = moduleExt === '.ts' ? projectRoot : dirname(projectRoot)

/** The CLI's launcher, for running oomlab again as a child. */
export const oomlabBin = join(packageRoot, 'bin', 'oomlab.mjs')

/** One of the harness's own modules or specs by its path without extension, e.g. `src/vitest/reporter`. */
export const ownModule = (path: string) => join(projectRoot, `${path}${moduleExt}`)

/** The folder of the vitest this harness resolves (a dependency here, a peer of the package). */
export function vitestRoot(): string {
  return dirname(createRequire(import.meta.url).resolve('vitest/package.json'))
}

/** vitest's command, from that copy. */
export function vitestBin(): string {
  return join(vitestRoot(), 'vitest.mjs')
}

/** Where a run's reports go by default: `reports/<name>` of the folder the command runs in. */
export const userReports = (name: string) => resolve('reports', name)

/** The user's cache folder for kernels, initramfs images and the accelerator probe's answer. */
export function cacheDir(): string {
  if (process.env.OOMLAB_CACHE_DIR) return resolve(process.env.OOMLAB_CACHE_DIR)
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache')
  return join(base, 'oom-group-lab')
}
