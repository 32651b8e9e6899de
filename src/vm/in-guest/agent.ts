/**
 * The guest agent: the last step of a lab guest's /init. It serves this machine's Os (LocalOs) to the
 * host over its channel (port.ts), and pushes the kernel log's records as they come. A snapshot of
 * the guest is taken while it waits here, so every restored guest starts at this point, pristine.
 */
import { readFileSync } from 'node:fs'
import { LocalOs } from '../../os/local.js'
import { serveOs } from '../../os/serve.js'
import { rehearse } from './rehearse.js'
import { openAgentPort } from './port.js'

const uptimeMs = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000)
const say = (line: string) => process.stdout.write(`oomlab agent: ${line}\n`)

const os = new LocalOs()
// Follow the kernel log from boot, so a restored guest does not start a reader first.
await os.prestartKernelLog()
const t0 = uptimeMs()
await rehearse(os, uptimeMs)
say(`rehearsed an experiment in ${((uptimeMs() - t0) / 1000).toFixed(1)} s`)

const stream = await openAgentPort(say)

// The host sent something that is not a frame: say so on the console, where the host's report shows it.
const host = serveOs(os, stream, { uptimeMs, onBroken: (why) => say(`refusing the channel: ${why.message}`) })
await host.ready.asEvent({ release: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), uptimeMs: uptimeMs() })
say(`ready at ${(uptimeMs() / 1000).toFixed(1)} s of guest uptime`)
