// Turns the evidence of real runs into unit-test fixtures:
//   npx tsx scripts/capture-fixtures.mts REPORT_DIR...   (each made by `oomlab reproduce --kernel K --report DIR`)
// writes test/fixtures/oom/<kernel release>/<scenario>.kmsg (the /dev/kmsg records of the run, one per
// line as read(2) returns them: "level,seq,usec,flags;message") and <scenario>.memory.events.{before,after}
// of the cgroup whose limit was hit.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { readEvidenceDir } from '../src/report/evidence.ts'

const out = new URL('../test/fixtures/oom/', import.meta.url).pathname
for (const report of process.argv.slice(2)) {
  for (const e of await readEvidenceDir(join(report, 'evidence'))) {
    const raw = e as unknown as {
      kernelRecords: { seq: number; usec: number; level: number; message: string }[]
      tree: { name: string; settings: Record<string, string>; memoryEventsText: { before?: string; after?: string } }[]
    }
    const dir = join(out, e.kernel.release)
    mkdirSync(dir, { recursive: true })
    // Kernel messages have facility 0, so the prefix's first field is the level itself.
    writeFileSync(join(dir, `${e.file}.kmsg`), raw.kernelRecords.map((r) => `${r.level},${r.seq},${r.usec},-;${r.message}\n`).join(''))
    const limited = raw.tree.find((c) => c.settings['memory.max'] !== undefined)!
    writeFileSync(join(dir, `${e.file}.memory.events.before`), limited.memoryEventsText.before ?? '')
    writeFileSync(join(dir, `${e.file}.memory.events.after`), limited.memoryEventsText.after ?? '')
    writeFileSync(join(dir, `${e.file}.root`), `${e.root}\n`)
    console.log(`${dir}/${e.file}.*`)
  }
}
