/**
 * Runs inside the guest as the last step of /init: reports hello, runs the experiment specs with
 * vitest (their output goes to the console), sends back the evidence and the result.
 */
import { openSync, writeSync, readFileSync, readdirSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { encodeFrame, type Frame, type BaselineRun, type TestTiming } from '../channel.js'
import { spawnSync } from 'node:child_process'
import { readGuestConfig } from './config.js'
import { GUEST_BASELINE, GUEST_BUNDLE, GUEST_CHANNEL, GUEST_USER } from './layout.js'
import { experimentTimeouts, timeoutScale } from '../../experiment/timeouts.js'
import { readStat } from '../../proc/procfs.js'

/** The article's experiments as a plain shell script, each timed from the agent. */
function runBaseline(): BaselineRun[] {
  return [1, 2, 3].map((n) => {
    const t0 = performance.now()
    const r = spawnSync('/bin/sh', [GUEST_BASELINE, String(n)], { encoding: 'utf8', timeout: 120_000 })
    return { scenario: n, ms: Math.round(performance.now() - t0), exitCode: r.status ?? -1, stderr: (r.stderr ?? '').slice(-500) }
  })
}

/** The processes that used the most CPU, for a hung run's report. */
function busiest(n = 6): string {
  const procs = []
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    const st = readStat(Number(pid))
    if (st) procs.push({ pid, comm: st.comm, state: st.state, ticks: st.utime + st.stime })
  }
  return procs
    .sort((a, b) => b.ticks - a.ticks)
    .slice(0, n)
    .map((p) => `${p.pid} ${p.comm} ${p.state} ${p.ticks / 100}s`)
    .join(', ')
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
    if (cfg.fault === 'cut-channel') {
      // A guest that dies while it reports: half a frame, no newline.
      writeSync(fd, encodeFrame({ type: 'result', exitCode: 0, passed: 1, failed: 0, skipped: 0, vitestMs: 0, uptimeMs: 0, leftovers: [] }).slice(0, 40))
      process.exit(1)
    }
    if (cfg.fault === 'exhaust-memory') {
      // The guest as a whole runs out of memory: the kernel's OOM killer takes this process.
      const hoard: Buffer[] = []
      for (;;) hoard.push(Buffer.alloc(32 << 20, 1))
    }
    const running = new Set<string>()
    if (cfg.deadlineMs)
      // On the agent's own thread: a spec's worker that is stuck cannot stop it from saying so.
      setTimeout(() => {
        const message = `the guest's run did not finish within ${cfg.deadlineMs! / 1000} s; still running: ${[...running].join(', ') || 'no spec file'}; busiest processes: ${busiest()}`
        process.stdout.write(`oomlab: ${message}\n`)
        send({ type: 'error', message })
        process.exit(1)
      }, cfg.deadlineMs).unref()
    const evidenceDir = '/tmp/evidence'
    mkdirSync(evidenceDir, { recursive: true })
    Object.assign(process.env, cfg.env, { OOMLAB_EVIDENCE_DIR: evidenceDir, CI: '1' }, cfg.baseline && { OOMLAB_TRACE_POPULATED: '1' })
    const phases: Record<string, number> = { initReady: Math.round(Number(process.env.OOMLAB_INIT_READY) * 1000), agentStarted: uptimeMs() }
    const baseline = cfg.baseline ? runBaseline() : undefined
    if (baseline) phases.baselineDone = uptimeMs()
    const { startVitest } = await import('vitest/node')
    phases.vitestImported = uptimeMs()
    const t0 = performance.now()
    const testMs = experimentTimeouts(timeoutScale(cfg.env.OOMLAB_TIMEOUT_SCALE)).testMs
    // The specs come compiled (see bundleGuest), so node imports them natively: no config file to
    // bundle, no TypeScript to transform. The settings are vitest.config.ts's "experiments" project.
    const vitest = await startVitest('test', cfg.filters, {
      config: false,
      root: GUEST_BUNDLE,
      name: cfg.suite,
      include: [cfg.suite === 'faults' ? 'guest-tests/*.spec.mjs' : 'experiments/*.spec.mjs'],
      watch: false,
      // The fault tests look for anything left on the whole machine: one at a time.
      fileParallelism: cfg.suite === 'experiments' && cfg.workers > 1,
      maxWorkers: cfg.suite === 'experiments' ? cfg.workers : 1,
      isolate: false,
      // Threads start faster than forked node processes (17.8 s vs 22.6 s for the article's specs).
      pool: 'threads',
      testTimeout: testMs,
      hookTimeout: testMs,
      experimental: { viteModuleRunner: false, nodeLoader: false },
      reporters: ['default', { onTestRunStart: () => void (phases.testRunStarted = uptimeMs()), onTestModuleStart: (m) => {
        const name = m.moduleId.replace(/^.*\//, '')
        phases[`started ${name}`] = uptimeMs()
        running.add(name)
      }, onTestModuleEnd: (m) => void running.delete(m.moduleId.replace(/^.*\//, '')) }],
    })
    phases.vitestDone = uptimeMs()
    const vitestMs = Math.round(performance.now() - t0)
    let passed = 0
    let failed = 0
    let skipped = 0
    const tests: TestTiming[] = []
    for (const m of vitest.state.getTestModules?.() ?? [])
      for (const t of m.children.allTests()) {
        const s = t.result().state
        tests.push({ file: m.moduleId.replace(/^.*\//, ''), name: t.name, state: s, ms: Math.round(t.diagnostic()?.duration ?? 0) })
        if (s === 'passed') passed++
        else if (s === 'failed') failed++
        else skipped++
      }
    const errors = vitest.state.getUnhandledErrors().length
    // A spec file that failed to load has no tests to count: vitest's exit code still says so.
    const vitestExit = Number(process.exitCode ?? 0)
    await vitest.close()
    phases.vitestClosed = uptimeMs()
    for (const f of readdirSync(evidenceDir)) send({ type: 'file', name: `evidence/${f}`, content: readFileSync(join(evidenceDir, f), 'utf8') })
    const leftovers = findLeftovers()
    const exitCode = failed > 0 || errors > 0 || vitestExit !== 0 || passed + skipped === 0 || leftovers.length > 0 ? 1 : 0
    send({ type: 'result', exitCode, passed, failed, skipped, vitestMs, uptimeMs: uptimeMs(), leftovers, phases, tests, ...(baseline && { baseline }) })
  } catch (err) {
    send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  }
}
