/**
 * One cgroup of an experiment's tree (its name in the article, its directory, the path the kernel
 * logs), and the one round trip that creates it and applies its settings.
 */
import { join } from 'node:path'
import { parseMemoryEvents, type MemoryEvents, type MemoryEventKey } from '../cgroup/memory-events.js'
import { OpBatch } from '../os/batch.js'
import type { Os } from '../os/os.js'
import { timeouts } from './timeouts.js'

export interface CgroupSettings {
  'memory.max'?: string
  'memory.oom.group'?: 0 | 1
}

export class Cgroup {
  /** Each setting as the kernel read it back (memory.max in bytes), and memory.swap.max=0 where the harness set it. */
  readonly settings: Record<string, string> = {}
  /** memory.events as the kernel printed it right after the cgroup was set up. */
  eventsTextAtStart: string | undefined
  /** The machine's clock (µs) when it saw this cgroup empty. */
  emptySeenByMachineUs: number | undefined

  constructor(
    private readonly os: Os,
    /** The article's name, e.g. "test01/test011". */
    readonly name: string,
    /** Absolute directory on the machine's cgroupfs. */
    readonly dir: string,
    /** The path the kernel prints in its log, e.g. "/oomlab-123-ab12cd/test01/test011". */
    readonly kernelPath: string,
    private readonly step: (what: string) => void = () => undefined,
  ) {}

  private async read(file: string): Promise<string> {
    const b = new OpBatch()
    const text = b.read(join(this.dir, file))
    await b.run(this.os)
    return text.value()
  }

  /** A control file's value now, as the kernel reads it (e.g. memory.oom.group). */
  async setting(file: string): Promise<string> {
    return (await this.read(file)).trim()
  }

  /**
   * Writes a control file after the cgroup was set up (an operator's write into a runtime's cgroup), and
   * records what the kernel then reads back among its settings.
   */
  async set(file: string, value: string): Promise<string> {
    const b = new OpBatch()
    const w = b.write(join(this.dir, file), value)
    const back = b.read(join(this.dir, file))
    await b.run(this.os)
    w.value()
    this.settings[file] = back.value().trim()
    this.step(`${this.name}/${file} set to ${value}`)
    return this.settings[file]
  }

  async memoryEvents(): Promise<MemoryEvents> {
    return parseMemoryEvents(await this.memoryEventsText())
  }

  memoryEventsText(): Promise<string> {
    return this.read('memory.events')
  }

  async procs(): Promise<number[]> {
    return (await this.read('cgroup.procs')).split('\n').filter((l) => /^\d+$/.test(l)).map(Number)
  }

  /** A memory limit other than "max" is set here. */
  get limited(): boolean {
    const max = this.settings['memory.max']
    return max !== undefined && max !== 'max'
  }

  /** Waits on memory.events until `key` reaches at least `atLeast` (the kernel signals each change). */
  async waitForMemoryEvent(key: MemoryEventKey, { atLeast }: { atLeast: number }): Promise<MemoryEvents> {
    const { values } = await this.os.waitKeyed({ path: join(this.dir, 'memory.events'), key, cmp: 'ge', value: atLeast, expected: `${key} >= ${atLeast} in ${this.name}/memory.events` }, timeouts.oomMs)
    return values as MemoryEvents
  }

  /** Waits for "populated 0": no process left here or below. */
  async waitUntilEmpty(): Promise<void> {
    const { atUs } = await this.os.waitKeyed({ path: join(this.dir, 'cgroup.events'), key: 'populated', cmp: 'eq', value: 0, expected: `"populated 0" in ${this.name}/cgroup.events` }, timeouts.killMs)
    this.emptySeenByMachineUs = atUs
    this.step(`${this.name} empty`)
  }
}

/** What the kernel made of a new cgroup: what it exposes, and what it did with each file written. */
export interface CgroupSetup {
  hasOomGroup: boolean
  hasLocalEvents: boolean
  hasKill: boolean
  hasPeak: boolean
  /** memory.swap.max=0 was taken (the kernel has memory.swap.max). */
  swapOff: boolean
  /** Each setting written: the kernel's refusal, or what it reads back. */
  settings: { file: string; written: string; refused?: string; readBack?: string }[]
  /** memory.events right after; undefined where the kernel refused to read it. */
  eventsText: string | undefined
}

/**
 * Creates `cg` (memory delegated to it from `parentDir` when that is not the tree's root, which has it
 * already) and writes its settings, in one round trip. Fails only when the cgroup could not be made.
 */
export async function setUpCgroup(os: Os, cg: Cgroup, o: { parentDir?: string; settings: CgroupSettings }): Promise<CgroupSetup> {
  const file = (f: string) => join(cg.dir, f)
  const writes: [string, string][] = []
  if (o.settings['memory.max'] !== undefined) writes.push(['memory.max', o.settings['memory.max']])
  if (o.settings['memory.oom.group'] !== undefined) writes.push(['memory.oom.group', String(o.settings['memory.oom.group'])])

  const b = new OpBatch()
  const delegate = o.parentDir !== undefined ? b.write(join(o.parentDir, 'cgroup.subtree_control'), '+memory') : undefined
  const mkdir = b.mkdir(cg.dir)
  const hasOomGroup = b.exists(file('memory.oom.group'))
  const hasLocalEvents = b.exists(file('memory.events.local'))
  const hasKill = b.exists(file('cgroup.kill'))
  const hasPeak = b.exists(file('memory.peak'))
  // Keep the workload off swap without touching the machine's swap (fails where the kernel has no memory.swap.max).
  const swap = b.write(file('memory.swap.max'), '0')
  const written = writes.map(([f, v]) => ({ f, v, write: b.write(file(f), v) }))
  const readBack = written.map((w) => ({ ...w, read: b.read(file(w.f)) }))
  const events = b.read(file('memory.events'))
  await b.run(os)

  delegate?.value()
  mkdir.value()
  return {
    hasOomGroup: hasOomGroup.value(),
    hasLocalEvents: hasLocalEvents.value(),
    hasKill: hasKill.value(),
    hasPeak: hasPeak.value(),
    swapOff: swap.result().ok,
    settings: readBack.map(({ f, v, write, read }) => {
      const w = write.result()
      return { file: f, written: v, ...(!w.ok ? { refused: w.error } : { readBack: read.value().trim() }) }
    }),
    eventsText: events.valueOrUndefined(),
  }
}

/**
 * Holds `cg` to its settings: a setting the kernel refused, or did not take as written, is a setup
 * failure, said as such. Records what it reads back, and memory.events at the start.
 */
export function takeSettings(cg: Cgroup, setup: CgroupSetup): void {
  if (setup.swapOff) cg.settings['memory.swap.max'] = '0'
  for (const s of setup.settings) if (s.refused !== undefined) throw new Error(`setup: the kernel refused ${s.file}=${s.written} on ${cg.name}: ${s.refused}`)
  for (const s of setup.settings) {
    const got = s.readBack!
    cg.settings[s.file] = got
    // memory.max reads back in bytes; oom.group as written.
    const expected = s.file === 'memory.max' ? String(parseSize(s.written)) : s.written
    if (got !== expected) throw new Error(`setup: ${cg.name}/${s.file} reads back "${got}" after writing "${s.written}": the kernel did not take the setting`)
  }
  if (setup.eventsText === undefined) throw new Error(`setup: ${cg.name}/memory.events could not be read`)
  cg.eventsTextAtStart = setup.eventsText
}

/** memory.max's value in bytes, as the kernel reads it back ("192M" -> 201326592; "max" stays). */
export function parseSize(v: string): string | number {
  const m = v.match(/^(\d+)([KMGT]?)$/i)
  if (!m) return v
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase())
}

/**
 * A cgroup something else made below the tree (a container runtime, from its config): what it set, read
 * back (memory.max, memory.oom.group, memory.swap.max), and memory.events now, in one round trip.
 */
export async function readCgroup(os: Os, cg: Cgroup): Promise<void> {
  const b = new OpBatch()
  const files = ['memory.max', 'memory.oom.group', 'memory.swap.max'].map((f) => ({ f, read: b.read(join(cg.dir, f)) }))
  const events = b.read(join(cg.dir, 'memory.events'))
  await b.run(os)
  for (const { f, read } of files) {
    const v = read.valueOrUndefined()?.trim()
    if (v !== undefined) cg.settings[f] = v
  }
  cg.eventsTextAtStart = events.value()
}
