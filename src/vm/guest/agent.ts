/**
 * Runs inside the guest as the last step of /init: reports hello, runs the experiment specs with
 * vitest (their output goes to the console), sends back the evidence and the result.
 */
import { openSync, writeSync, readFileSync, readdirSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { encodeFrame, type Frame } from '../channel.js'
import { GUEST_CHANNEL, GUEST_PROJECT, GUEST_USER } from './layout.js'

export interface GuestConfig {
  /** vitest filters (spec file name parts); empty runs every experiment. */
  filters: string[]
  /** Extra environment for the specs (OOMLAB_TIMEOUT_SCALE, ...). */
  env: Record<string, string>
}

/** The host passes its configuration on the kernel command line, base64url-encoded JSON. */
export function readGuestConfig(cmdline: string): GuestConfig {
  const m = cmdline.match(/(?:^|\s)oomlab\.cfg=(\S+)/)
  const cfg = m?.[1] ? (JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8')) as Partial<GuestConfig>) : {}
  return { filters: cfg.filters ?? [], env: cfg.env ?? {} }
}

export function encodeGuestConfig(cfg: GuestConfig): string {
  return `oomlab.cfg=${Buffer.from(JSON.stringify(cfg)).toString('base64url')}`
}

const uptimeMs = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000)

const WORKLOAD = new Set(['sh', 'sleep', 'nohup', 'stress-ng', 'stress-ng-vm', 'setpriv'])

/**
 * What teardown should have removed: the runs' cgroups, any process of the workload user, and any
 * workload program (some scenarios run it as root) other than the guest's own /init shell.
 */
export function findLeftovers(): string[] {
  const found: string[] = []
  for (const d of readdirSync('/sys/fs/cgroup')) if (d.startsWith('oomlab-')) found.push(`cgroup /sys/fs/cgroup/${d}`)
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && p !== '1' && p !== String(process.pid))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      const name = status.match(/^Name:\s+(.*)$/m)?.[1] ?? '?'
      const state = status.match(/^State:\s+(\S)/m)?.[1]
      if (state === 'Z') continue // exited, waiting for /init to reap it
      if (status.match(/^Uid:\s+(\d+)/m)?.[1] === String(GUEST_USER.uid) || WORKLOAD.has(name)) found.push(`process ${pid} (${name})`)
    } catch {
      /* exited meanwhile */
    }
  }
  return found
}

export async function guestMain(): Promise<void> {
  const fd = openSync(GUEST_CHANNEL, 'w')
  const send = (f: Frame) => writeSync(fd, encodeFrame(f))
  send({ type: 'hello', release: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), version: readFileSync('/proc/version', 'utf8').trim(), uptimeMs: uptimeMs() })
  try {
    const cfg = readGuestConfig(readFileSync('/proc/cmdline', 'utf8'))
    const evidenceDir = '/tmp/evidence'
    mkdirSync(evidenceDir, { recursive: true })
    Object.assign(process.env, cfg.env, { OOMLAB_EVIDENCE_DIR: evidenceDir, CI: '1' })
    const t0 = performance.now()
    const { startVitest } = await import('vitest/node')
    const vitest = await startVitest('test', cfg.filters, { project: 'experiments', watch: false, root: GUEST_PROJECT })
    const vitestMs = Math.round(performance.now() - t0)
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const m of vitest.state.getTestModules?.() ?? [])
      for (const t of m.children.allTests()) {
        const s = t.result().state
        if (s === 'passed') passed++
        else if (s === 'failed') failed++
        else skipped++
      }
    const errors = vitest.state.getUnhandledErrors().length
    // A spec file that failed to load has no tests to count: vitest's exit code still says so.
    const vitestExit = Number(process.exitCode ?? 0)
    await vitest.close()
    for (const f of readdirSync(evidenceDir)) send({ type: 'file', name: `evidence/${f}`, content: readFileSync(join(evidenceDir, f), 'utf8') })
    const leftovers = findLeftovers()
    const exitCode = failed > 0 || errors > 0 || vitestExit !== 0 || passed + skipped === 0 || leftovers.length > 0 ? 1 : 0
    send({ type: 'result', exitCode, passed, failed, skipped, vitestMs, uptimeMs: uptimeMs(), leftovers })
  } catch (err) {
    send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  }
}
