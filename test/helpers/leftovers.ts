/**
 * What a native run may leave on the machine, for tests that check it left nothing: its cgroups at the
 * cgroup2 root, its temp folders, and its processes (the workload user's, and whatever `ours` names) that
 * were not there before the test. Zombies are dead: they only wait for their parent to reap them.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'

/** The machine's processes now: what a later `leftovers` leaves out. */
export const processesNow = () => new Set(readdirSync('/proc').filter((p) => /^\d+$/.test(p)))

export function leftovers(o: { before: Set<string>; temp: RegExp; ours: (cmdline: string) => boolean; cgroupRoot?: string }): string[] {
  const found: string[] = []
  for (const d of readdirSync(o.cgroupRoot ?? '/sys/fs/cgroup')) if (d.startsWith('oomlab-')) found.push(`cgroup ${d}`)
  for (const f of readdirSync(tmpdir())) if (o.temp.test(f)) found.push(`temp ${f}`)
  for (const pid of [...processesNow()].filter((p) => !o.before.has(p))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      if (/^State:\s+Z/m.test(status)) continue
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()
      if (/^Uid:\s+1000\b/m.test(status) || o.ours(cmd)) found.push(`process ${pid} (${cmd.slice(0, 120)})`)
    } catch {
      /* gone meanwhile */
    }
  }
  return found
}
