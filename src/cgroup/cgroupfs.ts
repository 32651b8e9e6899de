/**
 * cgroup v2 access, named after what each helper does on cgroupfs
 * (in the spirit of the kernel's tools/testing/selftests/cgroup/cgroup_util.h).
 * A cgroup is addressed by its absolute directory under the cgroup2 mount.
 */
import { readFile, writeFile, mkdir, rmdir, access } from 'node:fs/promises'
import { readFileSync, existsSync } from 'node:fs'
import { join, isAbsolute, normalize, relative } from 'node:path'
import { errorMessage, UserError } from '../util/errors.js'

/** Failure of a cgroupfs operation, naming the file and the value. */
export class CgroupError extends Error {
  override readonly name = 'CgroupError'
  constructor(
    readonly op: string,
    readonly path: string,
    cause: unknown,
  ) {
    super(`${op} ${path}: ${errorMessage(cause)}`, { cause })
  }
}

export interface Mount {
  /** The mounted directory's path inside its filesystem ("/" for a whole cgroup hierarchy). */
  root: string
  mountPoint: string
  fsType: string
  /** The super options field, e.g. "rw,memory" for a v1 hierarchy. */
  superOptions: string
}

/** Parses /proc/self/mountinfo (fields per proc(5)). */
export function parseMountInfo(text: string): Mount[] {
  const mounts: Mount[] = []
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    const [pre, post] = line.split(' - ')
    if (!pre || !post) continue
    const fields = pre.split(' ')
    const root = unescapeMountPath(fields[3] ?? '/')
    const mountPoint = unescapeMountPath(fields[4] ?? '')
    const [fsType = '', , superOptions = ''] = post.split(' ')
    mounts.push({ root, mountPoint, fsType, superOptions })
  }
  return mounts
}

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)))
}

export function readMounts(): Mount[] {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'))
}

/** The first cgroup2 mount point, or undefined when the host has none. */
export function cgMountPoint(mounts: Mount[] = readMounts()): string | undefined {
  return cgMount(mounts)?.mountPoint
}

export function cgMount(mounts: Mount[] = readMounts()): Mount | undefined {
  return mounts.find((m) => m.fsType === 'cgroup2')
}

export async function cgCreate(cg: string): Promise<void> {
  try {
    await mkdir(cg)
  } catch (err) {
    throw new CgroupError('mkdir', cg, err)
  }
}

export async function cgDestroy(cg: string): Promise<void> {
  try {
    await rmdir(cg)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw new CgroupError('rmdir', cg, err)
  }
}

export async function cgWrite(cg: string, file: string, value: string): Promise<void> {
  const path = join(cg, file)
  try {
    await writeFile(path, value)
  } catch (err) {
    throw new CgroupError(`write "${value}" to`, path, err)
  }
}

export async function cgRead(cg: string, file: string): Promise<string> {
  const path = join(cg, file)
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw new CgroupError('read', path, err)
  }
}

/** Whether the kernel offers this interface file (e.g. cgroup.kill appeared in 5.14). */
export async function cgHas(cg: string, file: string): Promise<boolean> {
  try {
    await access(join(cg, file))
    return true
  } catch {
    return false
  }
}

/** Parses a flat keyed file ("key value" per line) such as memory.events or cgroup.events. */
export function parseKeyed(text: string): Map<string, number> {
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/)
    if (key && value !== undefined && /^\d+$/.test(value)) values.set(key, Number(value))
  }
  return values
}

export async function cgReadKeyed(cg: string, file: string): Promise<Map<string, number>> {
  return parseKeyed(await cgRead(cg, file))
}


export function parsePids(text: string): number[] {
  return text
    .split('\n')
    .filter((l) => /^\d+$/.test(l.trim()))
    .map(Number)
}

export async function cgReadProcs(cg: string): Promise<number[]> {
  return parsePids(await cgRead(cg, 'cgroup.procs'))
}

export async function cgIsPopulated(cg: string): Promise<boolean> {
  return (await cgReadKeyed(cg, 'cgroup.events')).get('populated') === 1
}

/** Controllers the parent makes available here ("cgroup.controllers"). */
export async function cgControllers(cg: string): Promise<string[]> {
  return (await cgRead(cg, 'cgroup.controllers')).trim().split(/\s+/).filter(Boolean)
}

export async function cgEnableControllers(cg: string, controllers: string[]): Promise<void> {
  await cgWrite(cg, 'cgroup.subtree_control', controllers.map((c) => `+${c}`).join(' '))
}

/**
 * The safety rule for where a run may create its tree: an absolute path with no ".." in it, at or
 * below the cgroup2 mount, naming an existing cgroup. Returns the path; throws a one-line UserError.
 */
export function cgCheckParent(path: string, mountPoint: string): string {
  if (!isAbsolute(path)) throw new UserError(`cgroup root ${JSON.stringify(path)}: give an absolute path below ${mountPoint}`)
  if (path.split('/').includes('..')) throw new UserError(`cgroup root ${JSON.stringify(path)}: ".." is not allowed; name the cgroup directly`)
  const rel = relative(mountPoint, normalize(path))
  if (rel.startsWith('..') || isAbsolute(rel)) throw new UserError(`cgroup root ${path} is outside the cgroup2 mount ${mountPoint}: name a cgroup below it`)
  if (!existsSync(join(path, 'cgroup.controllers'))) throw new UserError(`cgroup root ${path}: no such cgroup (create and delegate it first)`)
  return normalize(path)
}
