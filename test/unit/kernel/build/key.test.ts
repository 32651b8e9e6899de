/**
 * The key of a kernel built from source, and the tree identity it is made of: on real git repositories
 * and folders made here (git's own answers, find's own listing), and the version of Debian's 6.1 tree.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { projectRoot } from '../../../../src/util/paths.js'
import { buildKey, type BuildInputs } from '../../../../src/kernel/build/key.js'
import { checkKernelSrc, filesIdentity, gitIdentity, kernelTree, makefileVersion } from '../../../../src/kernel/build/tree.js'
import { which } from '../../../../src/util/which.js'

const inputs: BuildInputs = {
  arch: 'x86_64',
  version: '6.1.192',
  tree: { kind: 'files', base: 'tarball:cacdc3830989309d042083be3307969e55600ed7f908cf00df544c5ff50759a1' },
  fragment: '4ce457f56e313ecb0369f63557cc76e555b230e0e9d38aa7ef299ae0192e16b9',
  compiler: 'gcc (Debian 12.2.0-14+deb12u1) 12.2.0',
  linker: 'GNU ld (GNU Binutils for Debian) 2.40',
}

describe('the key', () => {
  it('is the same for the same inputs, and another for any input changed', () => {
    expect(buildKey(inputs)).toMatch(/^[0-9a-f]{24}$/)
    expect(buildKey({ ...inputs })).toBe(buildKey(inputs))
    const changed: BuildInputs[] = [
      { ...inputs, version: '6.1.193' },
      { ...inputs, tree: { ...inputs.tree, changes: 'a'.repeat(64) } },
      { ...inputs, tree: { ...inputs.tree, base: 'tarball:0' } },
      { ...inputs, tree: { ...inputs.tree, kind: 'git' } },
      { ...inputs, fragment: 'b'.repeat(64) },
      { ...inputs, compiler: 'gcc (Debian 14.2.0-19) 14.2.0' },
      { ...inputs, linker: 'GNU ld (GNU Binutils for Debian) 2.44' },
    ]
    expect(new Set([inputs, ...changed].map(buildKey)).size).toBe(changed.length + 1)
  })
})

describe('a kernel tree', () => {
  it("reads the version from the top Makefile (Debian's linux-source-6.1)", () => {
    expect(makefileVersion(readFileSync(join(projectRoot, 'test/fixtures/kbuild/6.1.192/Makefile.head'), 'utf8'))).toBe('6.1.192')
    expect(makefileVersion('VERSION = 6\nPATCHLEVEL = 8\nSUBLEVEL = 0\nEXTRAVERSION = -rc3\n')).toBe('6.8.0-rc3')
    expect(makefileVersion('all:\n\techo hi\n')).toBeUndefined()
  })
})

const git = (cwd: string, ...args: string[]) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd })

describe('what identifies a tree', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'oomlab-tree-'))
    mkdirSync(join(dir, 'mm'))
    writeFileSync(join(dir, 'mm/oom_kill.c'), 'int oom;\n')
    writeFileSync(join(dir, 'Makefile'), 'VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\n')
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it.skipIf(!which('git'))('in git: the tree HEAD holds, then a hash of the uncommitted changes, untracked files too', async () => {
    expect(await gitIdentity(dir)).toBeUndefined() // not a repository
    await git(dir, 'init', '-q')
    expect(await gitIdentity(dir)).toBeUndefined() // no commit yet
    await git(dir, 'add', '.')
    await git(dir, 'commit', '-q', '-m', 'one')
    const clean = (await gitIdentity(dir))!
    const tree = (await git(dir, 'rev-parse', 'HEAD^{tree}')).stdout
    expect(clean).toMatchObject({ kind: 'git', base: tree, changed: 0 })
    expect(clean.changes).toBeUndefined()
    // A touch changes nothing git sees.
    utimesSync(join(dir, 'mm/oom_kill.c'), new Date(), new Date(Date.now() + 5000))
    expect(await gitIdentity(dir)).toEqual(clean)
    writeFileSync(join(dir, 'mm/oom_kill.c'), 'int oom = 1;\n')
    const edited = (await gitIdentity(dir))!
    expect(edited).toMatchObject({ base: tree, changed: 1 })
    writeFileSync(join(dir, 'mm/new.c'), 'int n;\n')
    const untracked = (await gitIdentity(dir))!
    expect(untracked.changed).toBe(2)
    expect(new Set([edited.changes, untracked.changes]).size).toBe(2)
    // The same contents again: the same identity (a revert reuses the kernel built before).
    rmSync(join(dir, 'mm/new.c'))
    writeFileSync(join(dir, 'mm/oom_kill.c'), 'int oom;\n')
    expect(await gitIdentity(dir)).toEqual(clean)
    // Committed: a new tree, no changes; a commit with the same tree is the same kernel.
    writeFileSync(join(dir, 'mm/oom_kill.c'), 'int oom = 1;\n')
    await git(dir, 'commit', '-q', '-am', 'two')
    const two = (await gitIdentity(dir))!
    expect(two.base).not.toBe(tree)
    expect(two.changes).toBeUndefined()
    await git(dir, 'revert', '--no-edit', 'HEAD')
    expect((await gitIdentity(dir))!.base).toBe(tree)
  })

  it('outside git: the files as first seen, then a content hash of each file changed since', async () => {
    const baseline = join(dir, '..', `${dir.split('/').pop()}.baseline`)
    try {
      const first = await filesIdentity(dir, { baseline })
      expect(first).toMatchObject({ kind: 'files', changed: 0 })
      expect(first.base).toMatch(/^files:[0-9a-f]{64}$/)
      expect(await filesIdentity(dir, { baseline })).toEqual(first)
      writeFileSync(join(dir, 'mm/oom_kill.c'), 'int oom = 1;\n')
      const edited = await filesIdentity(dir, { baseline })
      expect(edited).toMatchObject({ base: first.base, changed: 1 })
      rmSync(join(dir, 'Makefile'))
      const gone = await filesIdentity(dir, { baseline })
      expect(gone.changed).toBe(2)
      expect(gone.changes).not.toBe(edited.changes)
      // A tarball's tree: its base is the tarball's.
      expect((await filesIdentity(dir, { baseline, base: 'tarball:abc' })).base).toBe('tarball:abc')
    } finally {
      rmSync(baseline, { force: true })
    }
  })

  it('refuses what is not a tree to build out of, in one line', () => {
    expect(() => kernelTree(join(dir, 'nope'))).toThrow(/no such folder/)
    expect(() => checkKernelSrc(join(dir, 'mm/oom_kill.c'))).toThrow(/a file that is not a tarball/)
    expect(() => kernelTree(join(dir, 'mm'))).toThrow(/is not a Linux source tree/)
    writeFileSync(join(dir, 'Kconfig'), '')
    expect(() => kernelTree(dir)).toThrow(/has no arch\/x86\/configs\/x86_64_defconfig/)
    mkdirSync(join(dir, 'arch/x86/configs'), { recursive: true })
    writeFileSync(join(dir, 'arch/x86/configs/x86_64_defconfig'), '')
    expect(kernelTree(dir).version).toBe('6.1.192')
    writeFileSync(join(dir, '.config'), '')
    expect(() => kernelTree(dir)).toThrow(/run `make mrproper` in it first/)
  })
})
