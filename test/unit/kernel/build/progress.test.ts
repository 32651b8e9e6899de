/**
 * What kbuild's output says as a build goes, on real logs of Debian's linux-source-6.1 (6.1.192) built with
 * the fragment (test/fixtures/kbuild/6.1.192): the full build (make -j2, 2 cores shared), the rebuild after
 * mm/oom_kill.c was touched, and the build that failed on an error put into mm/oom_kill.c.
 */
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { projectRoot } from '../../../../src/util/paths.js'
import { countLine, countLog, formatCount, formatElapsed, type BuildCount } from '../../../../src/kernel/build/progress.js'

const log = (name: string) => readFileSync(join(projectRoot, 'test/fixtures/kbuild/6.1.192', name), 'utf8')

describe("kbuild's output", () => {
  it('counts the kernel objects a full build compiles, not the host tools, objtool or the kallsyms passes', () => {
    const full = log('build.log')
    const c = countLog(full)
    expect(c.objects).toBe(1813)
    expect(c.firstError).toBeUndefined()
    expect(c.last).toBe('arch/x86/boot/bzImage')
    // What the count leaves out is in the log too.
    expect(full).toMatch(/^ {2}HOSTCC {2}\S+\.o$/m)
    expect(full).toMatch(/^ {2}CC {6}\/.*\/tools\/objtool\/.*\.o$/m)
    expect(full).toMatch(/^ {2}AS {6}\.tmp_vmlinux\.kallsyms1\.o$/m)
  })

  it('counts what a rebuild after a touch of mm/oom_kill.c redoes: that file, and the image around it', () => {
    const lines: string[] = []
    const c: BuildCount = { objects: 0 }
    for (const line of log('build-touched.log').split('\n')) if (countLine(c, line)) lines.push(c.last!)
    expect(lines).toEqual(['mm/oom_kill.o', 'init/version-timestamp.o', 'arch/x86/boot/version.o', 'arch/x86/boot/compressed/kaslr.o', 'arch/x86/boot/compressed/misc.o', 'arch/x86/boot/compressed/piggy.o', 'arch/x86/boot/header.o'])
  })

  it("finds a failed build's first error, not make's lines after it", () => {
    const c = countLog(log('build-failed.log'))
    expect(c.firstError).toMatch(/mm\/oom_kill\.c:1013:75: error: expected declaration specifiers before ‘oops’$/)
  })

  it('says how far it is', () => {
    expect(formatCount(412, 1833)).toBe('412 of about 1,833 objects')
    expect(formatCount(1, undefined)).toBe('1 object')
    expect(formatCount(1900, 1833)).toBe('1,900 of about 1,900 objects')
    expect(formatElapsed(4200)).toBe('4.2 s')
    expect(formatElapsed(1_874_000)).toBe('31 min 14 s')
  })
})
