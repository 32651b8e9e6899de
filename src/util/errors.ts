/**
 * An error the user can act on: one line saying what is wrong and what to do.
 * The CLI prints `message` alone (no stack) and exits with `exitCode`.
 */
export class UserError extends Error {
  override readonly name = 'UserError'
  constructor(
    message: string,
    readonly exitCode: number = 2,
  ) {
    super(message)
  }
}

/** A wait on the kernel that ran out of time: says what was expected and what was last seen. */
export class KernelTimeoutError extends Error {
  override readonly name = 'KernelTimeoutError'
  constructor(
    readonly expected: string,
    readonly lastSeen: string,
    readonly timeoutMs: number,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for ${expected}; last seen: ${lastSeen}`)
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** The kernel lacks what a scenario needs (memory.oom.group before 4.19, cgroup_disable=memory): neither a pass nor a failure. */
export class Unsupported extends Error {
  override readonly name = 'Unsupported'
}
