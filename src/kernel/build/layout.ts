/**
 * Where kernels built from source live in the cache:
 *
 *   kernels/src/<sha>/        a source tarball unpacked, by its sha256 (origin.json, baseline.files, its top folder);
 *                             tarballs.json remembers each tarball's sha256 by path, size and time
 *   kernels/build/<id>/       one source tree's build folder (make's O=): kept, so the next build is incremental
 *   kernels/built/<key>/      one kernel built (bzImage, config, build.json), by the key of what decided it
 *
 * A tree's build folder is named after its path; a built kernel after its key (src/kernel/build/key.ts).
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'

const short = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16)

export const sourcesDir = (cache: string) => join(cache, 'kernels', 'src')
export const buildDirOf = (cache: string, treeRoot: string) => join(cache, 'kernels', 'build', short(treeRoot))
export const builtDir = (cache: string, key?: string) => join(cache, 'kernels', 'built', ...(key === undefined ? [] : [key]))

/** A tarball's folder, by its contents' sha256. */
export const tarballDirOf = (cache: string, sha256: string) => join(sourcesDir(cache), sha256.slice(0, 16))

export const BUILD_FILES = {
  /** make's output of the last build in this folder. */
  log: 'build.log',
  /** The tree's files as first seen, for a tree outside git (src/kernel/build/tree.ts). */
  baseline: 'baseline.files',
  /** What the folder's .config was made of: redone when it changes. */
  configInputs: 'config.inputs',
  /** The make running now (pid and start), for a later build to end one its oomlab left behind. */
  make: 'make.pid',
  lock: '.lock',
  /** Which tree this folder builds (for `oomlab cache`). */
  tree: 'tree',
  /** The folder's size on disk, measured after each build (listing the cache must not walk it). */
  bytes: 'bytes',
} as const

/** Shapes of the names oomlab makes in these folders: nothing else is ever listed or removed. */
export const BUILD_ID = /^[0-9a-f]{16}$/
export const SOURCE_ID = /^[0-9a-f]{16}$/
export const BUILT_KEY = /^[0-9a-f]{24}$/
