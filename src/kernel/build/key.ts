/**
 * The key of a kernel built from source: what decides the bzImage, and nothing else. The tree (its base
 * and what changed beyond it), its version, the config fragment, the compiler and linker. The build
 * folder, the tree's path and the time do not enter: the same tree built twice is one kernel.
 */
import { createHash } from 'node:crypto'
import { execa } from 'execa'
import type { TreeIdentity } from './tree.js'

export interface BuildInputs {
  arch: 'x86_64'
  version: string
  tree: Pick<TreeIdentity, 'kind' | 'base' | 'changes'>
  /** sha256 of the fragment merged over the tree's defconfig. */
  fragment: string
  /** `gcc --version`'s first line. */
  compiler: string
  /** `ld --version`'s first line. */
  linker: string
}

/** Bumped when what a build does changes in a way the inputs above do not show. */
const KEY_FORMAT = 1

export function buildKey(i: BuildInputs): string {
  const canonical = JSON.stringify({
    format: KEY_FORMAT,
    arch: i.arch,
    version: i.version,
    tree: [i.tree.kind, i.tree.base, i.tree.changes ?? ''],
    fragment: i.fragment,
    compiler: i.compiler,
    linker: i.linker,
  })
  return createHash('sha256').update(canonical).digest('hex').slice(0, 24)
}

export const sha256Text = (text: string) => createHash('sha256').update(text).digest('hex')

/** A program's `--version` first line, or "" when it is not there (the tool check says so). */
export async function versionLine(program: string): Promise<string> {
  const r = await execa(program, ['--version'], { reject: false, stdin: 'ignore' }).catch(() => undefined)
  return r && r.exitCode === 0 ? String(r.stdout).split('\n')[0]!.trim() : ''
}
