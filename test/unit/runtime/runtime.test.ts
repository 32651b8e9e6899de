/**
 * What runc, crun, conmon and LXC said in real runs (test/fixtures/runtimes/, its README says which
 * kernel and run), read by the parsers of src/runtime/; the roles of a container's processes from their
 * /proc; the kernel's records of a container's group kill; the configs the fixture writes.
 */
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseOciState, ociConfig } from '../../../src/runtime/oci.js'
import { kernelLacks } from '../../../src/runtime/oci-container.js'
import { lxcConfig, lxcEnding, lxcLockDirs, parseLxcInfo } from '../../../src/runtime/lxc.js'
import { parseStat } from '../../../src/proc/procfs.js'
import { containerRoles, deathCause, exitingRecordOf, type Member } from '../../../src/experiment/fates.js'
import { RecordSplitter } from '../../../src/kmsg/record.js'
import { groupOomEvents, isWithin } from '../../../src/kmsg/oom.js'
import { specImage, imagesOf } from '../../../src/run/images.js'
import { parseImageAddition } from '../../../src/vm/image/recipes.js'
import { kubeletUnified } from '../../../src/experiment/runtime.js'
import { projectRoot } from '../../../src/util/paths.js'

const base = new URL('../../fixtures/runtimes/', import.meta.url).pathname
const read = (file: string) => readFileSync(join(base, file), 'utf8')
const K61 = '6.1.0-50-cloud-amd64'

describe('a runtime state', () => {
  it.each(['runc', 'crun'])('%s: created, running, stopped (pid 0 once stopped)', (rt) => {
    const created = parseOciState(read(`${K61}/${rt}-state-created.json`))
    const running = parseOciState(read(`${K61}/${rt}-state-running.json`))
    const stopped = parseOciState(read(`${K61}/${rt}-state-stopped.json`))
    expect([created.status, running.status, stopped.status]).toEqual(['created', 'running', 'stopped'])
    expect(running.pid).toBeGreaterThan(1)
    expect(stopped.pid).toBe(0)
  })

  it('refuses what is not a state', () => {
    expect(() => parseOciState('{"ociVersion":"1.0.2"}')).toThrow(/not a runtime's state/)
  })
})

describe("LXC's view", () => {
  it('lxc-info of a running container: its state and its init', () => {
    expect(parseLxcInfo(read(`${K61}/lxc-info-running.txt`), 0)).toEqual({ state: 'RUNNING', pid: 118 })
  })
  it('lxc-info once the application container is gone', () => {
    expect(parseLxcInfo(read(`${K61}/lxc-info-gone.txt`), 1)).toEqual({ error: "test011 doesn't exist" })
  })
  it("LXC's log says its init ended on SIGKILL", () => {
    expect(lxcEnding(read(`${K61}/lxc-log-group-kill.log`))).toEqual({ pid: 118, signal: 'Killed', signo: 9 })
    expect(lxcEnding('nothing ended')).toBeUndefined()
  })
  it('the lock folders of an lxcpath, deepest first, up to /run/lxc/lock', () => {
    expect(lxcLockDirs('/tmp/w/lxc')).toEqual(['/run/lxc/lock/tmp/w/lxc', '/run/lxc/lock/tmp/w', '/run/lxc/lock/tmp'])
  })
})

describe('a kernel a runtime cannot run on', () => {
  it('4.19 without BPF cgroup programs: runc', () => {
    expect(kernelLacks(read('4.19.304/runc-create.error'))).toMatch(/CONFIG_CGROUP_BPF/)
  })
  it('4.19 without user namespaces: crun', () => {
    expect(kernelLacks(read('4.19.304/crun-create.error'))).toMatch(/CONFIG_USER_NS/)
  })
  it('another failure is not the kernel’s', () => {
    expect(kernelLacks('runc could not create container a: conmon said nothing (exit 0)')).toBeUndefined()
  })
})

/** ProcInfo of each line of /proc/PID/stat. */
const procs = (file: string) => read(file).trim().split('\n').map((l) => ({ ...parseStat(l), uid: 1000 }))

describe("the roles in a container, from its processes' /proc", () => {
  it('crun: PID 1 is the server, its children the workers and stress-ng', () => {
    const { roles, stressorPid } = containerRoles(procs(`${K61}/crun-forking-server.stat`), 126)
    expect(Object.fromEntries(roles)).toEqual({ 126: 'container init', 127: 'worker', 128: 'worker', 129: 'stress-ng', 136: 'stress-ng vm stressor', 137: 'stress-ng vm worker' })
    expect(stressorPid).toBe(136)
  })
  it("LXC: PID 1 is LXC's init, the server its child", () => {
    const { roles, stressorPid } = containerRoles(procs(`${K61}/lxc-forking-server.stat`), 138)
    expect(Object.fromEntries(roles)).toEqual({ 138: 'container init', 139: 'server', 140: 'worker', 142: 'worker', 143: 'stress-ng', 144: 'stress-ng vm stressor', 145: 'stress-ng vm worker' })
    expect(stressorPid).toBe(144)
  })
})

describe("a container's group kill in the kernel log (runc, 6.1)", () => {
  const records = new RecordSplitter().push(read(`${K61}/20-runc-group-kill.kmsg`))
  const root = read(`${K61}/20-runc-group-kill.root`).trim()
  const [event] = groupOomEvents(records).filter((e) => isWithin(e.oomMemcg, root))
  const init = event!.killed.find((k) => k.comm === 'sh')!
  const member = (pid: number, comm: string): Member => ({ pid, comm, startTime: 1, role: 'worker', cgroup: 'app', namespaceInit: { pid: init.pid, comm: init.comm } })

  it('the group kill takes PID 1 (sh) with a record, finds others already exiting', () => {
    expect(event!.groupKill).toBe(event!.oomMemcg)
    expect(event!.exiting.map((x) => x.comm)).toContain('stress-ng')
    const stressNg = event!.exiting.find((x) => x.comm === 'stress-ng')!
    expect(exitingRecordOf([event!], { pid: stressNg.pid, comm: 'stress-ng' })).toMatch(/is already exiting\. Skip killing the task$/)
  })
  it('a member without a record of its own died with its PID namespace', () => {
    expect(deathCause([event!], member(99_999, 'sleep'))).toBe(`its PID namespace ended: the OOM killer killed its init, pid ${init.pid} (sh)`)
    // Its init itself, and a process of no container, have no such cause.
    expect(deathCause([event!], member(init.pid, 'sh'))).toBeUndefined()
    expect(deathCause([event!], { pid: 5, comm: 'sleep', startTime: 1, role: 'nohup sleep', cgroup: 'x' })).toBeUndefined()
  })
})

describe('what the fixture writes', () => {
  it("config.json: the kubelet's unified map, the limit with swap equal, the cgroupfs path, binds and files", () => {
    const c = ociConfig(
      { id: 'app-1', args: ['/bin/sh'], user: { uid: 1000, gid: 1000 }, cgroupsPath: '/t/kubepods/burstable/pod1/app-1', memoryLimit: 201326592, unified: kubeletUnified({ singleProcessOOMKill: false })!, files: { '/oomlab-gate': '/b/gate' } },
      { binds: ['usr', 'etc'] },
    ) as { linux: { cgroupsPath: string; resources: unknown }; mounts: { destination: string; source: string }[]; process: { user: unknown } }
    expect(c.linux.cgroupsPath).toBe('/t/kubepods/burstable/pod1/app-1')
    expect(c.linux.resources).toEqual({ memory: { limit: 201326592, swap: 201326592 }, unified: { 'memory.oom.group': '1' } })
    expect(c.mounts.map((m) => m.destination)).toEqual(['/proc', '/dev', '/tmp', '/usr', '/etc', '/oomlab-gate'])
    expect(c.process.user).toEqual({ uid: 1000, gid: 1000 })
  })
  it('singleProcessOOMKill: no unified key', () => {
    expect(kubeletUnified({ singleProcessOOMKill: true })).toBeUndefined()
  })
  it("an LXC config: the article's settings as lxc.cgroup2 keys, the container's cgroup where the tree has it", () => {
    const text = lxcConfig({ name: 'test011', args: ['sh'], user: { uid: 1000, gid: 1000 }, cwd: '/w', cgroupDir: '/t/test01/test011', monitorDir: '/t/lxc.monitor.test011', monitorPivot: '/t', cgroup: { 'memory.max': '192M', 'memory.oom.group': '1' } })
    expect(text.split('\n')).toEqual(expect.arrayContaining(['lxc.cgroup.dir.container = t/test01/test011', 'lxc.cgroup.dir.monitor.pivot = t', 'lxc.cgroup2.memory.max = 192M', 'lxc.cgroup2.memory.oom.group = 1', 'lxc.init.uid = 1000']))
  })
})

describe('which image a spec runs in', () => {
  it("the runtime specs ask for the runtimes' image; the article's for none", () => {
    expect(specImage(join(projectRoot, 'experiments/20-kubernetes-oom-group.spec.ts'))).toBe('runtimes')
    expect(specImage(join(projectRoot, 'experiments/02-leaf-oom-group-1.spec.ts'))).toBeUndefined()
    expect(imagesOf([join(projectRoot, 'experiments/02-leaf-oom-group-1.spec.ts'), join(projectRoot, 'experiments/24-lxc-article.spec.ts')])).toEqual(['runtimes'])
  })
  it('an image addition with Debian programs parses; a bad one says which field', () => {
    const a = parseImageAddition({ name: 'x', debian: { suite: 'bookworm', packages: ['runc'], programs: ['/usr/sbin/runc'], files: [], dirs: [] }, machine: { memoryMiB: 512, cpus: 1 } }, 'x.json')
    expect(a.debian?.programs).toEqual(['/usr/sbin/runc'])
    expect(() => parseImageAddition({ name: 'x', debian: { suite: 'bookworm' }, machine: { memoryMiB: 512, cpus: 1 } }, 'x.json')).toThrow(/x.json: debian \{suite, packages, programs, files, dirs\}/)
    const soak = JSON.parse(readFileSync(join(projectRoot, 'scripts/fault-tests.json'), 'utf8')) as { image: unknown }
    expect(parseImageAddition(soak.image, 'fault-tests.json').bundle?.from).toBe('test/guest')
  })
})
