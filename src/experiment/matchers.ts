/** Matchers that read like the article: who survived, who the OOM killer took. */
import { expect } from 'vitest'
import type { Fate } from './fates.js'

const who = (f: Fate) => `${f.member.role} (pid ${f.member.pid}, ${f.member.cgroup})`

expect.extend({
  toHaveSurvived(f: Fate) {
    const pass = f.alive && f.inCgroup && !f.killRecord
    return {
      pass,
      message: () =>
        pass
          ? `expected ${who(f)} to have been killed, but it is alive in its cgroup`
          : `expected ${who(f)} to survive in its cgroup, but it is ${f.liveness}${f.inCgroup ? '' : ', not in cgroup.procs'}${f.killRecord ? `; kernel: ${f.killRecord}` : ''}`,
    }
  },
  toHaveBeenKilledByTheOomKiller(f: Fate) {
    const pass = !f.alive && f.killRecord !== undefined
    return {
      pass,
      message: () =>
        pass
          ? `expected ${who(f)} not to be killed, but the kernel says: ${f.killRecord}`
          : `expected the OOM killer to kill ${who(f)}, but it is ${f.liveness}${f.killRecord ? '' : ' and the kernel log has no "Killed process" record for it'}`,
    }
  },
  toHaveDied(f: Fate) {
    const pass = !f.alive
    const record = f.killRecord ?? f.exitingRecord
    return {
      pass,
      message: () =>
        pass
          ? `expected ${who(f)} to be alive, but it is ${f.liveness}${record ? `; kernel: ${record}` : ''}`
          : `expected ${who(f)} to be dead, but it is alive${f.inCgroup ? ' in its cgroup' : ''}`,
    }
  },
})

interface FateMatchers<R = unknown> {
  /** Alive, still in its cgroup's cgroup.procs, and no "Killed process" record names it. */
  toHaveSurvived(): R
  /** Dead (gone or zombie) and the kernel log has its "Killed process" record. */
  toHaveBeenKilledByTheOomKiller(): R
  /**
   * Dead (gone or zombie), whoever killed it: the OOM killer, or its PID namespace's end once the OOM killer
   * took the namespace's init (the kernel then found it "already exiting"; its record is in the fate).
   */
  toHaveDied(): R
}

declare module 'vitest' {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface Assertion<T> extends FateMatchers<T> {}
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface AsymmetricMatchersContaining extends FateMatchers {}
}
