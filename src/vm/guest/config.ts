/** What the host tells the guest agent, on the kernel command line. */

export interface GuestConfig {
  /** vitest filters (spec file name parts); empty runs every experiment. */
  filters: string[]
  /** Extra environment for the specs (OOMLAB_TIMEOUT_SCALE, ...). */
  env: Record<string, string>
  /** Spec files run at once (vitest workers); 1 runs them one after another. */
  workers: number
  /** Before the specs, time the article's experiments as a plain shell script (oomlab bench). */
  baseline: boolean
  /** What to run: the experiment specs, or the fault tests of test/guest (oomlab soak). */
  suite: 'experiments' | 'faults'
  /** The agent's own deadline, before the host's: when it passes, the agent says what is still running. */
  deadlineMs?: number
  /** For the fault tests of the VM runner only: make the guest fail this way. */
  fault?: 'cut-channel' | 'exhaust-memory'
}

/** The host passes its configuration on the kernel command line, base64url-encoded JSON. */
export function readGuestConfig(cmdline: string): GuestConfig {
  const m = cmdline.match(/(?:^|\s)oomlab\.cfg=(\S+)/)
  const cfg = m?.[1] ? (JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8')) as Partial<GuestConfig>) : {}
  return { filters: cfg.filters ?? [], env: cfg.env ?? {}, workers: cfg.workers ?? GUEST_WORKERS, baseline: cfg.baseline ?? false, suite: cfg.suite ?? 'experiments', ...(cfg.fault && { fault: cfg.fault }), ...(cfg.deadlineMs && { deadlineMs: cfg.deadlineMs }) }
}

export function encodeGuestConfig(cfg: GuestConfig): string {
  return `oomlab.cfg=${Buffer.from(JSON.stringify(cfg)).toString('base64url')}`
}

/**
 * One spec file at a time. Two at once saved ~10% (8 specs: 57-64 s against 72 s) but let two OOMs run
 * together, and the kernel rate-limits the OOM header (10 per 5 s): an event without its header could
 * then not be told from the other spec's.
 */
export const GUEST_WORKERS = 1
