/**
 * Long work (a kernel's download, a guest image, a snapshot's boot) reported as it goes: on a terminal one
 * live line, rewritten in place; in a CI log plain lines, one when a step starts and then at most one per
 * quarter of it or per 10 s, so a log shows that work moves without a line per tick.
 */

/** A step's state: `key` names the step (a new key is a new step), `fraction` how much of it is done, when known. */
export type Progress = (key: string, text: string, fraction?: number) => void

export interface StatusLineOptions {
  /** Before every line, e.g. 'oomlab: '. */
  prefix?: string
  /** Whether to rewrite one line in place (default: the stream is a terminal). */
  live?: boolean
  now?: () => number
}

/** Plain lines: at most one every this many ms within a step, beyond quarters done. */
const PLAIN_EVERY_MS = 10_000
/** Live line: redrawn at most this often. */
const LIVE_EVERY_MS = 100

export class StatusLine {
  private readonly prefix: string
  private readonly live: boolean
  private readonly now: () => number
  /** What the live line shows now ('' when none is drawn), and when it was drawn. */
  private shown = ''
  private drawnAt = -Infinity
  /** Each step's last state said: steps of two kernels prepared at once are followed apart. */
  private steps = new Map<string, { at: number; quarter: number }>()

  constructor(
    private readonly out: { write(s: string): unknown; isTTY?: boolean; columns?: number } = process.stderr,
    o: StatusLineOptions = {},
  ) {
    this.prefix = o.prefix ?? 'oomlab: '
    this.live = o.live ?? out.isTTY === true
    this.now = o.now ?? (() => performance.now())
  }

  /** The step's new state: redrawn live, or printed as a plain line when it says something new. */
  readonly progress: Progress = (key, text, fraction) => {
    const t = this.now()
    const quarter = fraction === undefined ? -1 : Math.floor(Math.min(1, Math.max(0, fraction)) * 4)
    const prev = this.steps.get(key)
    const same = prev !== undefined && quarter === prev.quarter
    if (this.live) {
      if (same && t - this.drawnAt < LIVE_EVERY_MS) return
      this.draw(text)
      this.drawnAt = t
    } else {
      if (same && t - prev.at < PLAIN_EVERY_MS) return
      this.out.write(`${this.prefix}${text}\n`)
    }
    this.steps.set(key, { at: t, quarter })
  }

  /** A line that stays. The live line is cleared first; the step's next state draws it again. */
  readonly log = (line: string): void => {
    this.clear()
    this.out.write(`${this.prefix}${line}\n`)
    this.drawnAt = -Infinity
  }

  /** Clears the live line: the steps are over. */
  end(): void {
    this.clear()
    this.steps.clear()
    this.drawnAt = -Infinity
  }

  private draw(text: string): void {
    // A terminal of unknown width (0 under script(1)) is taken as 100 columns.
    const width = Math.max(20, (this.out.columns || 100) - 1)
    const line = `${this.prefix}${text}`.slice(0, width)
    this.out.write(`\r\x1b[K${line}`)
    this.shown = text
  }

  private clear(): void {
    if (!this.shown) return
    this.out.write('\r\x1b[K')
    this.shown = ''
  }
}

/** Bytes as a person reads them: 12.3 MB. */
export const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`
