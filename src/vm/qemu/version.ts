/**
 * Which QEMU this is: its `--version` line, and its binary's size and time. Starting QEMU to ask costs
 * 0.05-0.15 s, on every run's way to its first experiment (the snapshot's key, the KVM probe's answer), so the
 * line is asked once per binary and remembered in the cache by the binary's path, size and time.
 */
import { createHash } from 'node:crypto'
import { realpath, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { readJson, writeJsonAtomic } from '../../util/files.js'

export interface QemuBuild {
  /** The binary, links resolved. */
  path: string
  /** `qemu --version`'s first line. */
  version: string
  size: number
  mtimeMs: number
}

const known = new Map<string, Promise<QemuBuild>>()

/** `qemu` is a path; `cacheDir` where the line is remembered across runs (none: asked once per process). */
export function qemuBuild(qemu: string, cacheDir?: string): Promise<QemuBuild> {
  const key = `${qemu}\n${cacheDir ?? ''}`
  let b = known.get(key)
  if (!b) {
    b = ask(qemu, cacheDir)
    known.set(key, b)
    b.catch(() => known.delete(key))
  }
  return b
}

async function ask(qemu: string, cacheDir: string | undefined): Promise<QemuBuild> {
  const path = await realpath(qemu)
  const st = await stat(path)
  const note = cacheDir && join(cacheDir, 'qemu', `${createHash('sha256').update(path).digest('hex').slice(0, 16)}.json`)
  const noted = note ? await readJson<QemuBuild>(note) : undefined
  if (noted && noted.path === path && noted.size === st.size && noted.mtimeMs === st.mtimeMs && typeof noted.version === 'string') return noted
  const { execa } = await import('execa')
  const r = await execa(path, ['--version'], { reject: false })
  const version = String(r.stdout).split('\n')[0] ?? ''
  if (r.exitCode !== 0 || !version) throw new Error(`${path} --version failed: ${String(r.stderr).trim() || r.shortMessage}`)
  const build = { path, version, size: st.size, mtimeMs: st.mtimeMs }
  // Not remembered is only slower: a cache that cannot be written is no reason to fail.
  if (note) await writeJsonAtomic(note, build).catch(() => undefined)
  return build
}
