// Runs the article's scenarios on real kernels and turns their evidence into unit-test fixtures:
//   npx tsx scripts/capture-fixtures.mts [KERNEL...]        (default: bullseye bookworm trixie sid)
// A KERNEL with a slash in it is a kernel image (../shared/kernels/linux-4.19.304/bzImage), run with
// --kernel-image. For each kernel it runs the article's three scenarios and writes, under
// test/fixtures/oom/<kernel release>/, <scenario>.kmsg (the /dev/kmsg records of the run, one per line
// as read(2) returns them: "level,seq,usec,flags;message"), <scenario>.memory.events.{before,after}
// of the cgroup whose limit was hit, and <scenario>.root (the run's root cgroup as the kernel prints it).
import { $ } from 'zx'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { dir } from 'tmp-promise'
import { readEvidenceDir } from '../src/report/evidence.js'

const kernels = process.argv.slice(2).length ? process.argv.slice(2) : ['bullseye', 'bookworm', 'trixie', 'sid']
const out = new URL('../test/fixtures/oom/', import.meta.url).pathname
const work = await dir({ unsafeCleanup: true })
try {
  for (const kernel of kernels) {
    const report = join(work.path, kernel.replaceAll('/', '_'))
    const which = kernel.includes('/') ? ['--kernel-image', kernel] : ['--kernel', kernel]
    await $({ stdio: 'inherit' })`node bin/oomlab.mjs reproduce ${which} --report ${report} ${['01-', '02-', '03-']}`
    for (const e of await readEvidenceDir(join(report, 'evidence'))) {
      const target = join(out, e.kernel.release)
      mkdirSync(target, { recursive: true })
      // Kernel messages have facility 0, so the prefix's first field is the level itself.
      writeFileSync(join(target, `${e.file}.kmsg`), (e.kernelRecords ?? []).map((r) => `${r.level},${r.seq},${r.usec},-;${r.message}\n`).join(''))
      const limited = e.tree.find((c) => c.settings['memory.max'] !== 'max' && c.settings['memory.max'] !== undefined)!
      writeFileSync(join(target, `${e.file}.memory.events.before`), limited.memoryEventsText?.before ?? '')
      writeFileSync(join(target, `${e.file}.memory.events.after`), limited.memoryEventsText?.after ?? '')
      writeFileSync(join(target, `${e.file}.root`), `${e.root}\n`)
      console.log(`${target}/${e.file}.*`)
    }
  }
} finally {
  await work.cleanup()
}
