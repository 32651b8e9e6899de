/**
 * A process group outlives its leader: what the CLI waits for after an interrupted vitest exits (its forks
 * still tearing down), and why a zombie counts as dead, for the group and for a tree's owner.
 */
import { describe, it, expect } from 'vitest'
import { groupMembers, groupEnded } from '../../src/proc/group.js'
import { liveness, readStat } from '../../src/proc/procfs.js'
import { ownerIsGone, ownerOf } from '../../src/proc/owner.js'
import { startChild } from '../helpers/child.js'
import { until } from '../helpers/poll.js'

/** A detached sh (the group's leader) that starts `background` in its group, prints its PID and exits. */
async function orphanedGroup(background: string): Promise<{ pgid: number; pid: number }> {
  const sh = startChild('sh', ['-c', `${background} & echo $!`], { detached: true })
  await sh.exit
  return { pgid: sh.pid, pid: Number(sh.lines[0]) }
}

/** A zombie: a child whose parent (`sleep`, exec'd over the shell that forked it) never reaps it; it ends after the exec. */
async function zombie(): Promise<{ zombie: number; parent: number }> {
  const sh = startChild('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 30'])
  const pid = Number(await sh.line(/^\d+$/))
  await until(`pid ${pid} a zombie`, () => readStat(pid)?.state === 'Z', { everyMs: 1 })
  return { zombie: pid, parent: sh.pid }
}

describe('a process group after its leader exits', () => {
  it('holds what the leader started until that ends, and groupEnded waits for it', async () => {
    const g = await orphanedGroup('sleep 0.3')
    expect(groupMembers(g.pgid).map((p) => p.pid)).toEqual([g.pid])
    const t0 = performance.now()
    expect(await groupEnded(g.pgid, 10_000)).toEqual([])
    expect(performance.now() - t0).toBeGreaterThan(100)
  })

  it('gives up after its timeout, naming what is still alive', async () => {
    const g = await orphanedGroup('sleep 30')
    try {
      const left = await groupEnded(g.pgid, 50)
      expect(left.map((p) => p.pid)).toEqual([g.pid])
    } finally {
      process.kill(-g.pgid, 'SIGKILL')
    }
    expect(await groupEnded(g.pgid, 5000)).toEqual([])
  })
})

describe('a zombie', () => {
  it('is dead: not a live group member, and a gone owner whose tree may be reaped', async () => {
    const z = await zombie()
    try {
      const id = { pid: z.zombie, startTime: readStat(z.zombie)!.startTime }
      expect(liveness(id)).toBe('zombie')
      expect(ownerIsGone({ ...id, pidns: 0 })).toBe(true)
      expect(ownerIsGone(ownerOf(z.parent)!)).toBe(false)
      expect(groupMembers(readStat(z.zombie)!.pgrp).map((p) => p.pid)).not.toContain(z.zombie)
    } finally {
      process.kill(z.parent, 'SIGKILL')
    }
  })
})
