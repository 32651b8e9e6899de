/**
 * The repository's CLI and TypeScript scripts as children of a test: `oomlab` run to its end, and a
 * script of a test's own started under tsx (node itself, so a signal to it is one to the script).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { projectRoot } from '../../src/util/paths.js'
import { startChild, type Child } from './child.js'

export const OOMLAB = join(projectRoot, 'bin/oomlab.mjs')

export interface Ran {
  exitCode: number | undefined
  stdout: string
  stderr: string
  /** stdout and stderr as they came. */
  all: string
}

/**
 * `oomlab ARGS` to its end, from the repository (or a copy of it at `root`); never rejects: the test reads the
 * exit code. `signal` stops it (SIGTERM, then SIGKILL after 2 s): a test that timed out loads the machine no further.
 */
export async function oomlab(args: string[], o: { cwd?: string; env?: Record<string, string>; root?: string; signal?: AbortSignal } = {}): Promise<Ran> {
  const r = await execa(process.execPath, [o.root ? join(o.root, 'bin/oomlab.mjs') : OOMLAB, ...args], {
    reject: false,
    all: true,
    ...(o.cwd !== undefined && { cwd: o.cwd }),
    ...(o.env !== undefined && { env: o.env }),
    ...(o.signal !== undefined && { cancelSignal: o.signal, forceKillAfterDelay: 2000 }),
  })
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr), all: String(r.all) }
}

/** `source` as a `.mts` file in `dir` (an ES module wherever it is: top-level await), run under tsx from the repository. */
export function startScript(dir: string, name: string, source: string): Child {
  const script = join(dir, `${name}.mts`)
  writeFileSync(script, source)
  return startChild(process.execPath, ['--import', 'tsx', script], { cwd: projectRoot })
}
