/**
 * The agent's side of the wire: serves an Os (this machine's) to the other end, and pushes the kernel
 * log's records to it as they come. The guest agent (src/vm/in-guest/agent.ts) runs this on its serial port.
 */
import type { BirpcReturn } from 'birpc'
import { connect, type AgentFunctions, type Duplex, type HostFunctions } from './wire.js'
import type { LocalOs } from './local.js'

export function serveOs(os: LocalOs, stream: Duplex, o: { uptimeMs: () => number; onBroken: (why: Error) => void }): BirpcReturn<HostFunctions, AgentFunctions> {
  // eslint-disable-next-line prefer-const
  let host: BirpcReturn<HostFunctions, AgentFunctions>
  const functions: AgentFunctions = {
    ping: async () => o.uptimeMs(),
    facts: () => os.facts(),
    clock: () => os.clock(),
    run: (ops) => os.run(ops),
    openTree: (t) => os.openTree(t),
    closeTree: (t) => os.closeTree(t),
    spawn: (s) => os.spawn(s),
    type: (id, line) => os.type(id, line),
    outputMark: (id) => os.outputMark(id),
    waitOutput: (id, pattern, since, expected, ms) => os.waitOutput(id, pattern, since, expected, ms),
    output: (id) => os.output(id),
    waitExit: (procs, ms) => os.waitExit(procs, ms),
    exec: (s) => os.exec(s),
    setOomScoreAdj: (pid, adj) => os.setOomScoreAdj(pid, adj),
    waitKeyed: (c, ms) => os.waitKeyed(c, ms),
    waitText: (c, ms) => os.waitText(c, ms),
    waitAllocationEnd: (w, ms) => os.waitAllocationEnd(w, ms),
    followKernelLog: () =>
      os.followKernelLog(
        (records) => void host.kmsg.asEvent(records),
        (why) => void host.kmsgBroken.asEvent(why),
      ),
    kernelLogBarrier: () => os.kernelLogBarrier(),
    kernelLogMark: (text) => os.kernelLogMark(text),
    tracePopulated: (on) => os.tracePopulated(on),
    readTrace: () => os.readTrace(),
    dispose: () => os.dispose(),
  }
  host = connect<HostFunctions, AgentFunctions>(stream, functions, { eventNames: ['kmsg', 'kmsgBroken', 'ready'], onBroken: o.onBroken })
  return host
}
