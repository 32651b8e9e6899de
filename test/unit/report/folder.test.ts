// A run's report folder is its own: refused when it is not ours, cleared of our files only, locked while a run writes.
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir, homedir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { checkReportDir, claimReportDir, pointLatest, pruneRuns, runDirOf, MARKER } from '../../../src/report/folder.js'
import { ownerOf } from '../../../src/proc/owner.js'

let dir: string
beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), 'oomlab-folder-'))))
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const put = (f: string, text = f) => {
  mkdirSync(join(dir, f, '..'), { recursive: true })
  writeFileSync(join(dir, f), text)
}
const files = (d = dir) => (readdirSync(d, { recursive: true }) as string[]).map(String).sort()

describe('the report folder', () => {
  it('refuses the filesystem root, the home folder, a file and a folder of files not made by oomlab', () => {
    expect(() => checkReportDir('/')).toThrow('not the filesystem root')
    expect(() => checkReportDir(homedir())).toThrow('not your home folder')
    expect(() => checkReportDir('')).toThrow('name a folder')
    put('a-file')
    expect(() => checkReportDir(join(dir, 'a-file'))).toThrow('it is not a folder')
    put('mine/evidence/mydata.json')
    expect(() => claimReportDir(join(dir, 'mine'), 'r1')).toThrow(/holds files not made by oomlab \(evidence\)/)
    expect(readFileSync(join(dir, 'mine/evidence/mydata.json'), 'utf8')).toBe('mine/evidence/mydata.json')
    expect(() => checkReportDir(dir, { forbidden: [dir] })).toThrow('not the project folder itself')
  })

  it("removes the last run's files when a run takes it again, and nothing a user put there", () => {
    const report = join(dir, 'r')
    const first = claimReportDir(report, 'r1')
    put('r/summary.txt')
    put('r/evidence/02-leaf.json')
    first.finish()
    first[Symbol.dispose]()
    expect(JSON.parse(readFileSync(join(report, MARKER), 'utf8'))).toMatchObject({ run: 'r1', files: ['evidence/02-leaf.json', 'summary.txt'] })
    put('r/evidence/mydata.json', 'mine')
    put('r/notes.txt', 'mine')
    using second = claimReportDir(report, 'r2')
    expect(files(report).filter((f) => f !== MARKER && f !== '.oomlab-report.lock')).toEqual(['evidence', 'evidence/mydata.json', 'notes.txt'])
    put('r/summary.txt')
    second.finish()
    // The user's files are never listed as the run's.
    expect(JSON.parse(readFileSync(join(report, MARKER), 'utf8')).files).toEqual(['summary.txt'])
  })

  it('refuses a second run while the first holds it, and takes over from one that died', () => {
    const report = join(dir, 'r')
    const held = claimReportDir(report, 'r1')
    expect(() => claimReportDir(report, 'r2')).toThrow(/another oomlab run \(pid \d+\) is writing there/)
    held[Symbol.dispose]()
    // A lock whose owner is gone: a process that ran and exited.
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'])
    const deadPid = Number(child.stdout)
    writeFileSync(join(report, '.oomlab-report.lock'), JSON.stringify({ ...ownerOf(process.pid)!, pid: deadPid }))
    using again = claimReportDir(report, 'r3')
    expect(again.dir).toBe(report)
  })

  it('points latest at the last run and keeps only the newest runs of ours', () => {
    const root = join(dir, 'reports')
    for (const id of ['20260101-000000-1', '20260102-000000-1', '20260103-000000-1']) {
      const c = claimReportDir(runDirOf(root, id), id)
      put(`reports/runs/${id}/summary.txt`)
      c.finish()
      c[Symbol.dispose]()
    }
    put('reports/runs/not-ours/keep.txt')
    pointLatest(root, runDirOf(root, '20260103-000000-1'))
    expect(readlinkSync(join(root, 'latest'))).toBe('runs/20260103-000000-1')
    expect(pruneRuns(root, 1)).toEqual([runDirOf(root, '20260101-000000-1'), runDirOf(root, '20260102-000000-1')])
    expect(readdirSync(join(root, 'runs')).sort()).toEqual(['20260103-000000-1', 'not-ours'])
  })
})
