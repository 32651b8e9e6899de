/**
 * Running a container runtime's commands on a machine, through its Os: where each program is, its
 * version, and each command's result kept for the evidence. A machine without a program is one line
 * saying what to do, never a silent skip.
 */
import type { ExecResult, Os } from '../os/os.js'
import { UserError } from '../util/errors.js'

/** A program and the package it comes in: the guest image's (src/runtime/image.ts), or the host's. */
export const RUNTIME_PROGRAMS = {
  runc: 'runc',
  crun: 'crun',
  conmon: 'conmon',
  'lxc-execute': 'lxc',
  'lxc-info': 'lxc',
  'lxc-stop': 'lxc',
} as const
export type RuntimeProgram = keyof typeof RUNTIME_PROGRAMS

/** Prints each name's path, or "missing NAME". */
const LOCATE = 'for p in "$@"; do command -v "$p" || echo "missing $p"; done'

/** Each program's path on the machine; a missing one fails in one line naming what to install. */
export async function locate(os: Os, names: readonly RuntimeProgram[]): Promise<Record<string, string>> {
  const r = await os.exec({ argv: ['/bin/sh', '-c', LOCATE, 'locate', ...names], timeoutMs: 10_000 })
  const found: Record<string, string> = {}
  const missing: string[] = []
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const m = line.match(/^missing (\S+)$/)
    if (m) missing.push(m[1]!)
    else found[line.slice(line.lastIndexOf('/') + 1)] = line
  }
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((n) => RUNTIME_PROGRAMS[n as RuntimeProgram]))]
    const where = os.name === 'local'
      ? `this host lacks ${missing.join(', ')}: install Debian's ${pkgs.join(', ')} (\`apt-get install ${pkgs.join(' ')}\`; \`lxc\` enables its lxc-net service), or run in a guest with --vm, whose image carries them`
      : `the guest (${os.name}) lacks ${missing.join(', ')}: its spec must ask for the runtimes' image (\`@oomlab-image runtimes\` in its first comment)`
    throw new UserError(where, 1)
  }
  return found
}

/** One command a runtime ran, as the evidence keeps it. */
export interface CommandRecord {
  argv: string[]
  exitCode: number | null
  signal?: string
  stdout?: string
  stderr?: string
  ms: number
}

export function recordOf(argv: string[], r: ExecResult): CommandRecord {
  return {
    argv,
    exitCode: r.exitCode,
    ...(r.signal !== null && { signal: r.signal }),
    ...(r.stdout.trim() && { stdout: r.stdout.trim().slice(-4000) }),
    ...(r.stderr.trim() && { stderr: r.stderr.trim().slice(-4000) }),
    ms: r.ms,
  }
}

/** Fails with what the command printed, when it did not exit 0. */
export function check(rec: CommandRecord): CommandRecord {
  if (rec.exitCode !== 0) throw new Error(`${rec.argv.join(' ')} exited ${rec.exitCode ?? rec.signal}: ${(rec.stderr || rec.stdout || '').split('\n').slice(-3).join(' | ')}`)
  return rec
}
