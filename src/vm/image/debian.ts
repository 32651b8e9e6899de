/**
 * Debian packages for a guest image that the host need not have installed (container runtimes): fetched
 * with the private apt of src/kernel/apt.ts (the system's apt setup untouched, nothing installed on the
 * host) and unpacked with `dpkg -x` into the cache, once per set of versions. The libraries they load
 * come along: every `lib*` package in their Depends, recursively, but the C library (the guest's is the
 * host's, as node's is). The mirror is asked once; later runs find the unpacked folder by what was asked.
 */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { dir as tmpDir } from 'tmp-promise'
import { downloadAndExtract, showPackage, updateSuite, type AptContext, type PackageInfo } from '../../kernel/apt.js'
import { readJson, writeJsonAtomic } from '../../util/files.js'
import { UserError } from '../../util/errors.js'
import type { Progress } from '../../util/progress.js'

export interface DebianRequest {
  suite: string
  packages: string[]
}

export interface UnpackedPackages {
  /** A folder holding every package's files, as if installed at /. */
  root: string
  /** name=version of each package unpacked, the requested ones and the libraries they depend on. */
  packages: string[]
}

/** Depends followed when collecting what the requested packages load: shared libraries, not programs or services. */
const LIBRARY = /^(lib|zlib)/
/** The guest runs the host's C library (node's): Debian's would shadow it. */
const HOST_OWN = new Set(['libc6', 'libc-bin', 'libgcc-s1'])

export interface UnpackContext {
  cache: string
  log: (line: string) => void
  progress?: Progress
  signal?: AbortSignal
}

/** The requested packages unpacked in the cache: found by what was asked, else fetched from the mirror. */
export async function unpackedPackages(req: DebianRequest, o: UnpackContext): Promise<UnpackedPackages> {
  const base = join(o.cache, 'debian', req.suite)
  const asked = join(base, `asked-${createHash('sha256').update([...req.packages].sort().join(' ')).digest('hex').slice(0, 16)}.json`)
  const known = await readJson<UnpackedPackages>(asked)
  if (known && (await stat(join(known.root, '.complete')).catch(() => undefined))) return known
  const ctx: AptContext = {
    // The kernels' apt folder: the suite's lists are shared with the kernels fetched from it.
    kernelsDir: join(o.cache, 'kernels'),
    log: o.log,
    progress: o.progress ?? (() => undefined),
    ...(o.signal && { signal: o.signal }),
  }
  const apt = await updateSuite(ctx, req.suite)
  const infos = await dependencyClosure(ctx, apt, req)
  const versions = infos.map((p) => `${p.name}=${p.version}`).sort()
  const root = join(base, createHash('sha256').update(versions.join('\n')).digest('hex').slice(0, 16))
  if (!(await stat(join(root, '.complete')).catch(() => undefined))) {
    await mkdir(base, { recursive: true })
    const work = await tmpDir({ tmpdir: base, prefix: '.unpack-', unsafeCleanup: true })
    try {
      const into = join(work.path, 'root')
      for (const p of infos) {
        const one = await downloadAndExtract(ctx, apt, p, work.path)
        // dpkg -x into one folder per package, then merged: each package's files land where dpkg puts them.
        await mergeInto(one, into)
      }
      await writeJsonAtomic(join(into, '.complete'), versions)
      // Another process may have made the same folder meanwhile: its copy is as good.
      await rename(into, root).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err
      })
    } finally {
      await work.cleanup()
    }
    o.log(`Debian ${req.suite} packages unpacked into the cache: ${versions.join(', ')}`)
  }
  const unpacked = { root, packages: versions }
  await writeJsonAtomic(asked, unpacked)
  await pruneUnpacked(base, root)
  return unpacked
}

async function dependencyClosure(ctx: AptContext, apt: Awaited<ReturnType<typeof updateSuite>>, req: DebianRequest): Promise<PackageInfo[]> {
  const seen = new Map<string, PackageInfo>()
  const queue = [...req.packages]
  while (queue.length > 0) {
    const name = queue.shift()!
    if (seen.has(name) || HOST_OWN.has(name)) continue
    const info = await showPackage(ctx, apt, name)
    if (!info) {
      if (req.packages.includes(name)) throw new UserError(`Debian ${req.suite} has no package ${name}`)
      continue // a virtual package or an alternative another package provides
    }
    seen.set(name, info)
    queue.push(...info.depends.filter((d) => LIBRARY.test(d)))
  }
  return [...seen.values()]
}

/** Moves every entry of `from` into `into`, folders merged (packages share /usr, /lib, ...). */
async function mergeInto(from: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true })
  for (const e of await readdir(from, { withFileTypes: true })) {
    const src = join(from, e.name)
    const dst = join(into, e.name)
    const there = await stat(dst).catch(() => undefined)
    if (e.isDirectory() && there?.isDirectory()) await mergeInto(src, dst)
    else if (!there) await rename(src, dst)
  }
}

/** Unpacked folders of this suite but the newest two go (a version set replaced by a newer one). */
async function pruneUnpacked(base: string, keep: string): Promise<void> {
  const folders = (await readdir(base, { withFileTypes: true })).filter((e) => e.isDirectory() && /^[0-9a-f]{16}$/.test(e.name)).map((e) => join(base, e.name))
  const withTimes = await Promise.all(folders.map(async (f) => ({ f, t: (await stat(f)).mtimeMs })))
  withTimes.sort((a, b) => b.t - a.t)
  for (const { f } of withTimes.slice(2)) if (f !== keep) await rm(f, { recursive: true, force: true })
}
