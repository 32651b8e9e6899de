/** The article's shell: typed into, it starts stress-ng as its own child. */
import type { Os } from '../os/os.js'
import type { Member } from './fates.js'
import { timeouts } from './timeouts.js'

export const ARTICLE_STRESS = ['stress-ng', '--vm', '1', '--vm-bytes', '256M', '--vm-hang', '0', '-v'] as const
const SAFE_WORD = /^[\w.=/-]+$/

/** What the Lab learns when the shell's stress-ng has started: the vm stressor's PID and the command typed. */
export type StressStarted = (started: { stressorPid: number; command: string }) => Promise<void>

export class Shell {
  constructor(
    private readonly os: Os,
    readonly member: Member,
    /** The machine's handle for the shell's process. */
    private readonly id: string,
    private readonly started: StressStarted,
  ) {}

  get pid(): number {
    return this.member.pid
  }

  /**
   * Types the article's `stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v` and waits until its vm
   * stressor has started; the Lab then records the stress-ng processes it sees.
   */
  async runStressNg(argv: readonly string[] = ARTICLE_STRESS): Promise<void> {
    if (!argv.every((w) => SAFE_WORD.test(w))) throw new Error(`refusing to type an unsafe word into the shell: ${argv.join(' ')}`)
    const since = await this.os.outputMark(this.id)
    await this.os.type(this.id, argv.join(' '))
    const m = await this.os.waitOutput(this.id, String.raw`vm: started \[(\d+)\]`, since, 'stress-ng to report "vm: started [PID]"', timeouts.startMs)
    await this.started({ stressorPid: Number(m[1]), command: argv.join(' ') })
  }

  /** What the shell printed: stress-ng's -v output. */
  output(): Promise<string> {
    return this.os.output(this.id)
  }
}
