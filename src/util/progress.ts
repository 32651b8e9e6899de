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
  /** What the live line shows now ('' when none is drawn). */
  private shown = ''
  private last = { key: '', at: -Infinity, quarter: -1 }

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
    const newStep = key !== this.last.key
    if (this.live) {
      if (!newStep && t - this.last.at < LIVE_EVERY_MS && quarter === this.last.quarter) return
      this.draw(text)
    } else {
      if (!newStep && quarter === this.last.quarter && t - this.last.at < PLAIN_EVERY_MS) return
      this.out.write(`${this.prefix}${text}\n`)
    }
    this.last = { key, at: t, quarter }
  }

  /** A line that stays. The live line is cleared first; the step's next state draws it again. */
  readonly log = (line: string): void => {
    this.clear()
    this.out.write(`${this.prefix}${line}\n`)
    this.last = { ...this.last, at: -Infinity }
  }

  /** Clears the live line (the step is over). */
  end(): void {
    this.clear()
    this.last = { key: '', at: -Infinity, quarter: -1 }
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
