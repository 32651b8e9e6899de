/**
 * The rules of native runs on systemd hosts (host/scope.ts): which scope a run asks for, that the
 * launcher refuses to act anywhere but in a scope of ours with memory delegated, and which scopes a
 * later run stops as stale. The cgroups are real, on this host's cgroup2 mount; what needs systemd
 * itself is proven in a systemd guest by scripts/try-provision.sh.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { join, relative } from 'node:path'
import { mkdirSync, existsSync, readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { cgMountPoint, cgCreate, cgReadProcs } from '../../src/cgroup/cgroupfs.js'
import { killAndRemoveSync } from '../../src/os/kill.js'
import { ownerOf, treeName } from '../../src/proc/owner.js'
import { parseProcCgroup, scopeUnit, parseScopeUnit, inScopeCommand, enterScope, staleScopes, isSystemdHost } from '../../src/host/scope.js'

// /proc/self/cgroup as printed by real hosts: a process that `systemd-run --scope -p Delegate=yes` started
// in the Debian 12 guest of scripts/try-provision.sh, and this project's hybrid machine.
const SYSTEMD_SCOPE = '0::/system.slice/run-r789bc7b8793f4fbcad7cb9fe49a4e2a8.scope\n'
const HYBRID = '9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/process_api/4041c5c7150793168d51a8074c50c479\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n'

describe('delegated scopes', () => {
  it("reads a process's cgroup v2 path, and nothing from v1 lines", () => {
    expect(parseProcCgroup(SYSTEMD_SCOPE)).toBe('/system.slice/run-r789bc7b8793f4fbcad7cb9fe49a4e2a8.scope')
    expect(parseProcCgroup(HYBRID)).toBe('/')
    expect(parseProcCgroup(HYBRID.replace('0::/\n', ''))).toBeUndefined()
    expect(parseProcCgroup(readFileSync('/proc/self/cgroup', 'utf8'))).toMatch(/^\//)
  })

  it('names the scope after the run, and reads the owner back from ours only', () => {
    const me = ownerOf(process.pid)!
    const unit = scopeUnit(me)
    expect(unit).toMatch(/^oomlab-\d+-[0-9a-z]+-[0-9a-z]+-[0-9a-f]{6}\.scope$/)
    expect(parseScopeUnit(unit)).toEqual(me)
    for (const other of ['session-3.scope', 'oomlab-1-2-3-abcdef', 'oomlab-1-2-3-abcdef.service', 'oomlab-1-abcdef.scope', 'init.scope'])
      expect(parseScopeUnit(other)).toBeUndefined()
  })

  it('asks systemd for a delegated scope and passes the command on as it is, no shell', () => {
    const cmd = inScopeCommand('oomlab-1-2-3-abcdef.scope', ['/usr/bin/node', 'a b; rm -rf /', '$(x)'])
    expect(cmd.slice(0, cmd.indexOf('--'))).toEqual(['systemd-run', '--scope', '--quiet', '--collect', '--property=Delegate=yes', '--unit=oomlab-1-2-3-abcdef.scope'])
    // Ended with whoever started it; the command's words stay separate arguments.
    expect(cmd.slice(cmd.indexOf('--') + 1)).toEqual(['setpriv', '--pdeathsig', 'TERM', '--', '/usr/bin/node', 'a b; rm -rf /', '$(x)'])
  })

  it('tells a systemd host by /run/systemd/system', () => {
    expect(isSystemdHost('/nonexistent')).toBe(false)
    expect(isSystemdHost('/proc')).toBe(true)
  })
})

const mount = cgMountPoint()
const why = !mount ? 'no cgroup2 mount on this host' : process.getuid?.() !== 0 ? 'needs root to create cgroups' : ''

describe.skipIf(why !== '')(`delegated scopes on this host's cgroups${why ? ` (skipped: ${why})` : ''}`, () => {
  const slice = join(mount ?? '/nonexistent', `oomlab-unit-${process.pid}-${randomBytes(3).toString('hex')}`)
  beforeAll(() => cgCreate(slice))
  afterAll(() => killAndRemoveSync(slice))

  it('refuses to act outside a scope of ours, before writing anything', async () => {
    const before = readFileSync(join(slice, 'cgroup.procs'), 'utf8')
    // A scope, but systemd-run's own name for it, not one of ours.
    await expect(enterScope(mount!, SYSTEMD_SCOPE)).rejects.toThrow(/^expected to run in a scope started by oomlab \(systemd-run --scope\), but this process is in cgroup \/system\.slice\/run-r789bc7b8793f4fbcad7cb9fe49a4e2a8\.scope$/)
    await expect(enterScope(mount!, HYBRID)).rejects.toThrow(/is in cgroup \/$/)
    await expect(enterScope(mount!, HYBRID.replace('0::/\n', ''))).rejects.toThrow(/is in cgroup \(none on cgroup v2\)/)
    // A scope of ours without memory (this host's v2 has none): no leaf made, nothing moved.
    const scope = join(slice, scopeUnit(ownerOf(process.pid)!))
    await cgCreate(scope)
    await expect(enterScope(mount!, `0::/${relative(mount!, scope)}\n`)).rejects.toThrow(/^systemd did not delegate the memory controller to .*\.scope: enable memory accounting/)
    expect(existsSync(join(scope, 'harness'))).toBe(false)
    expect(await cgReadProcs(scope)).toEqual([])
    expect(readFileSync(join(slice, 'cgroup.procs'), 'utf8')).toBe(before)
  })

  it('finds the scopes of dead runs beside its own, and only those', () => {
    const me = ownerOf(process.pid)!
    const unit = (o: Partial<typeof me>, r: string) => `${treeName({ ...me, ...o }, r)}.scope`
    const dead = unit({ pid: 999999 }, 'aaaaaa')
    const reused = unit({ startTime: me.startTime + 1 }, 'bbbbbb')
    const live = unit({}, 'cccccc')
    const foreign = unit({ pid: 999999, pidns: me.pidns + 1 }, 'dddddd')
    for (const name of [dead, reused, live, foreign, 'session-3.scope', `${treeName({ ...me, pid: 999999 }, 'eeeeee')}`]) mkdirSync(join(slice, name))
    expect(staleScopes(slice, me.pidns).sort()).toEqual([dead, reused].sort())
  })
})
