/**
 * A source tarball (Debian's /usr/src/linux-source-6.1.tar.xz, a kernel.org release) unpacked into the
 * cache once: the tree a build then uses, named by the tarball's sha256, with the list of its files as
 * unpacked (the baseline a later edit in it is found against).
 */
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { execa } from 'execa'
import { readJson, sha256File, writeJsonAtomic } from '../../util/files.js'
import { UserError } from '../../util/errors.js'
import { listFiles } from './tree.js'
import { diskBytes } from './build.js'
import { BUILD_FILES, sourcesDir, tarballDirOf } from './layout.js'

interface Origin {
  tarball: string
  sha256: string
  /** The archive's one top folder: the tree. */
  top: string
  unpackedAt: string
}

export interface UnpackedTree {
  root: string
  /** "tarball:<sha256>": the tree's base identity. */
  base: string
  baseline: string
  unpacked: boolean
}

/** The tarball's sha256, remembered by path, size and time (hashing 140 MB each call would cost a third of a second). */
async function tarballSha256(cache: string, tarball: string): Promise<string> {
  const st = await stat(tarball)
  const memo = join(sourcesDir(cache), 'tarballs.json')
  const known = (await readJson<Record<string, string>>(memo)) ?? {}
  const id = `${tarball}\0${st.size}\0${st.mtimeMs}`
  if (known[id]) return known[id]
  const sha = await sha256File(tarball)
  await writeJsonAtomic(memo, { ...((await readJson<Record<string, string>>(memo)) ?? {}), [id]: sha })
  return sha
}

export async function unpackTarball(cache: string, tarball: string, o: { log: (line: string) => void; signal?: AbortSignal }): Promise<UnpackedTree> {
  const sha = await tarballSha256(cache, tarball)
  const dir = tarballDirOf(cache, sha)
  const treeOf = (origin: Origin, unpacked: boolean): UnpackedTree => ({
    root: join(dir, origin.top),
    base: `tarball:${origin.sha256}`,
    baseline: join(dir, BUILD_FILES.baseline),
    unpacked,
  })
  const done = await readJson<Origin>(join(dir, 'origin.json'))
  if (done) return treeOf(done, false)
  const partial = `${dir}.${randomBytes(4).toString('hex')}.partial`
  try {
    const t0 = performance.now()
    o.log(`unpacking ${basename(tarball)} (${((await stat(tarball)).size / 1e6).toFixed(0)} MB) into ${dir}`)
    await mkdir(partial, { recursive: true })
    const r = await execa('tar', ['-xf', tarball, '-C', partial], { reject: false, stdin: 'ignore', ...(o.signal && { cancelSignal: o.signal }) })
    if (o.signal?.aborted) throw o.signal.reason
    if (r.exitCode !== 0) throw new UserError(`could not unpack ${tarball}: ${String(r.stderr).trim().split('\n').at(-1) ?? `tar exited with ${r.exitCode}`}`)
    const entries = await readdir(partial)
    const top = entries[0]
    if (entries.length !== 1 || !(await stat(join(partial, top!))).isDirectory()) throw new UserError(`${tarball} does not hold one top folder (it holds ${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}): unpack it yourself and give the tree`)
    const origin: Origin = { tarball, sha256: sha, top: top!, unpackedAt: new Date().toISOString() }
    await writeFile(join(partial, BUILD_FILES.baseline), await listFiles(join(partial, top!)))
    await writeFile(join(partial, BUILD_FILES.bytes), String(await diskBytes(partial)))
    await writeJsonAtomic(join(partial, 'origin.json'), origin)
    try {
      await rename(partial, dir)
    } catch (err) {
      // Another oomlab unpacked it meanwhile: use theirs.
      const theirs = await readJson<Origin>(join(dir, 'origin.json'))
      if (!theirs) throw err
      return treeOf(theirs, false)
    }
    o.log(`unpacked in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    return treeOf(origin, true)
  } finally {
    await rm(partial, { recursive: true, force: true })
  }
}
