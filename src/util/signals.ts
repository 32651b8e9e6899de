/**
 * Teardown handlers (a worker's trees, a process's guests) run on SIGINT/SIGTERM/SIGHUP, then end the process
 * as the signal would have, by sending it again. Not in a process that shuts down in order itself (the CLI):
 * there the echo read as a second Ctrl-C and made it exit at once, its own cleanup skipped.
 */
let handledHere = false

/** This process stops in order on a signal: teardown handlers do their part and leave the rest to it. */
export function handleSignalsHere(): void {
  handledHere = true
}

/** After a teardown on `sig`: ends the process as the signal would have, unless it handles signals itself. */
export function endBySignal(sig: NodeJS.Signals): void {
  if (!handledHere) process.kill(process.pid, sig)
}
