/**
 * A kernel source tree and what decides which kernel it builds: its version (the top Makefile), and
 * its contents, named cheaply. In a git tree: the tree object HEAD holds for it plus a hash of what is
 * not committed (`git diff HEAD`, untracked files). Elsewhere: where its files came from (a tarball's
 * sha256, or the tree as first seen) plus a content hash of every file changed since, found by size
 * and mtime against a list of the files taken then.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { UserError } from '../../util/errors.js'

export interface KernelTree {
  /** Absolute, symlinks resolved. */
  root: string
  /** From the top Makefile: "6.1.192", "4.19.304", "6.8.0-rc3". */
  version: string
}

/** What a source tarball is called. */
export const TARBALL = /\.(?:tar|tar\.(?:xz|gz|bz2|zst)|tgz|txz)$/

/**
 * Checks what --kernel-src names before anything runs: a kernel tree, or a tarball (unpacked when the
 * kernel is built). A bad one is a one-line UserError.
 */
export function checkKernelSrc(src: string): void {
  const st = statSync(src, { throwIfNoEntry: false })
  if (!st) throw new UserError(`--kernel-src ${src}: no such file or folder; give a Linux source tree or its tarball (.tar.xz)`)
  if (st.isFile()) {
    if (!TARBALL.test(src)) throw new UserError(`--kernel-src ${src}: a file that is not a tarball (.tar.xz, .tar.gz, ...); give a Linux source tree or its tarball`)
    return
  }
  kernelTree(src)
}

/** The tree at `dir`, or a one-line reason it is not a kernel tree one can build out of tree. */
export function kernelTree(dir: string): KernelTree {
  let root: string
  try {
    root = realpathSync(dir)
  } catch {
    throw new UserError(`${dir}: no such folder; give a Linux source tree (or its .tar.xz)`)
  }
  if (!statSync(root).isDirectory()) throw new UserError(`${dir} is not a folder: give a Linux source tree (or its .tar.xz)`)
  const makefile = existsSync(join(root, 'Makefile')) ? readFileSync(join(root, 'Makefile'), 'utf8').slice(0, 4096) : ''
  const version = makefileVersion(makefile)
  if (!version || !existsSync(join(root, 'Kconfig'))) throw new UserError(`${dir} is not a Linux source tree (its top Makefile has no VERSION and PATCHLEVEL)`)
  if (!existsSync(join(root, 'arch/x86/configs/x86_64_defconfig'))) throw new UserError(`${dir}: Linux ${version} has no arch/x86/configs/x86_64_defconfig to start from`)
  // kbuild refuses to build out of tree from a tree built in place; cleaning it is the user's call.
  if (existsSync(join(root, '.config')) || existsSync(join(root, 'include/config'))) throw new UserError(`${dir} has been configured in place (it has .config or include/config): oomlab builds out of tree, so run \`make mrproper\` in it first (it removes that .config)`)
  return { root, version }
}

/** "VERSION = 6 / PATCHLEVEL = 1 / SUBLEVEL = 192 / EXTRAVERSION = -rc3" -> "6.1.192-rc3". */
export function makefileVersion(makefile: string): string | undefined {
  const field = (name: string) => new RegExp(`^${name}\\s*=[ \\t]*(\\S*)`, 'm').exec(makefile)?.[1] ?? ''
  const [v, p, s, e] = [field('VERSION'), field('PATCHLEVEL'), field('SUBLEVEL'), field('EXTRAVERSION')]
  if (!/^\d+$/.test(v) || !/^\d+$/.test(p)) return undefined
  return `${v}.${p}${/^\d+$/.test(s) ? `.${s}` : ''}${e}`
}

export interface TreeIdentity {
  kind: 'git' | 'files'
  /** git: the tree object of HEAD for this folder; files: where the files came from (a tarball's sha256, or the list taken when first seen). */
  base: string
  /** git: HEAD's commit (said, not keyed: two commits with one tree build one kernel). */
  commit?: string
  /** sha256 of what changed beyond `base`; absent when nothing did. */
  changes?: string
  /** How many files changed beyond `base`. */
  changed: number
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex')

const git = (root: string, args: string[], o: { encoding?: 'buffer' } = {}) =>
  execa('git', ['-C', root, ...args], { reject: false, stdin: 'ignore', maxBuffer: 1 << 30, ...(o.encoding && { encoding: o.encoding }) })

/** The tree's identity in git, or undefined when it is not in a git work tree with a commit holding it. */
export async function gitIdentity(root: string): Promise<TreeIdentity | undefined> {
  const head = await git(root, ['rev-parse', 'HEAD', 'HEAD:./']).catch(() => undefined)
  if (!head || head.exitCode !== 0) return undefined
  const [commit, tree] = String(head.stdout).trim().split('\n')
  if (!commit || !tree) return undefined
  const status = await git(root, ['status', '--porcelain=v1', '-z', '--untracked-files=all', '--', '.'])
  if (status.exitCode !== 0) return undefined
  const entries = String(status.stdout).split('\0').filter(Boolean)
  if (entries.length === 0) return { kind: 'git', base: tree, commit, changed: 0 }
  // What differs from HEAD, staged or not, and every untracked file's contents: the kernel built from it.
  const diff = await git(root, ['diff', 'HEAD', '--binary', '--no-ext-diff', '--', '.'], { encoding: 'buffer' })
  const untracked = await git(root, ['ls-files', '-z', '--others', '--exclude-standard', '--', '.'])
  const hash = createHash('sha256').update(diff.stdout as unknown as Uint8Array)
  for (const f of String(untracked.stdout).split('\0').filter(Boolean).sort()) {
    hash.update(`\0${f}\0`)
    hash.update(await readFile(join(root, f)).catch(() => Buffer.from('(unreadable)')))
  }
  return { kind: 'git', base: tree, commit, changes: hash.digest('hex'), changed: entries.length }
}

/** One line per file or symlink: "path\tsize\tmtime\tlink target", sorted; the tree as `find` sees it, .git left out. */
export async function listFiles(root: string): Promise<string> {
  const r = await execa('find', ['.', '-path', './.git', '-prune', '-o', '(', '-type', 'f', '-o', '-type', 'l', ')', '-printf', '%P\t%s\t%T@\t%l\n'], { cwd: root, stdin: 'ignore', maxBuffer: 1 << 30 })
  return `${r.stdout.split('\n').filter(Boolean).sort().join('\n')}\n`
}

/** Whether no file or folder under `root` (.git aside) changed its inode since `stamp` was written: find stops at the first that did. */
async function unchangedSince(root: string, stamp: string): Promise<boolean> {
  const r = await execa('find', ['.', '-path', './.git', '-prune', '-o', '-cnewer', stamp, '-print', '-quit'], { cwd: root, reject: false, stdin: 'ignore' })
  return r.exitCode === 0 && String(r.stdout).trim() === ''
}

/** The files of `now` that are not in `then` as they were (size, mtime), and those gone. */
export function changedFiles(then: string, now: string): { changed: string[]; gone: string[] } {
  if (then === now) return { changed: [], gone: [] }
  const parse = (text: string) => new Map(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('\t')), l] as const))
  const a = parse(then)
  const b = parse(now)
  return { changed: [...b].filter(([p, l]) => a.get(p) !== l).map(([p]) => p), gone: [...a.keys()].filter((p) => !b.has(p)) }
}

/**
 * A tree outside git: `base` names where its files came from, `baseline` is the file holding the list of
 * them as they were then (written now when there is none yet). Files changed since are hashed by content.
 */
export async function filesIdentity(root: string, o: { base?: string; baseline: string }): Promise<TreeIdentity> {
  let then = await readFile(o.baseline, 'utf8').catch(() => undefined)
  const base = (list: string) => o.base ?? `files:${sha256(list)}`
  // Nothing's inode changed since the list was taken (a write, a touch, a file added or removed in a folder all do): the same files.
  if (then !== undefined && (await unchangedSince(root, o.baseline))) return { kind: 'files', base: base(then), changed: 0 }
  const now = await listFiles(root)
  if (then === undefined) {
    await writeFile(o.baseline, now)
    then = now
  }
  const { changed, gone } = changedFiles(then, now)
  if (changed.length + gone.length === 0) return { kind: 'files', base: base(then), changed: 0 }
  const hash = createHash('sha256')
  const links = new Map(now.split('\n').map((l) => l.split('\t')).filter((f) => f[3]).map((f) => [f[0]!, f[3]!]))
  // A symlink by where it points (its target may be a folder), a file by its contents.
  for (const f of changed.sort()) hash.update(`${f}\0`).update(links.has(f) ? `-> ${links.get(f)}` : await readFile(join(root, f))).update('\0')
  for (const f of gone.sort()) hash.update(`${f}\0(gone)\0`)
  return { kind: 'files', base: base(then), changes: hash.digest('hex'), changed: changed.length + gone.length }
}
