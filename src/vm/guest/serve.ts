/**
 * The guest agent: the last step of a lab guest's /init. It serves this machine's Os (LocalOs) to the
 * host over the second serial port, and pushes the kernel log's records as they come. A snapshot of
 * the guest is taken while it waits here, so every restored guest starts at this point, pristine.
 */
import { openSync, readFileSync, createWriteStream } from 'node:fs'
import { ReadStream } from 'node:tty'
import { LocalOs } from '../../os/local.js'
import { serveOs } from '../../os/serve.js'
import { rehearse } from './rehearse.js'
import type { Duplex } from '../../os/wire.js'
import { GUEST_CHANNEL } from './layout.js'

const uptimeMs = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000)
const say = (line: string) => process.stdout.write(`oomlab agent: ${line}\n`)

const os = new LocalOs()
// Follow the kernel log from boot, so a restored guest does not start a reader first.
await os.prestartKernelLog()
const t0 = uptimeMs()
await rehearse(os, uptimeMs)
say(`rehearsed an experiment in ${((uptimeMs() - t0) / 1000).toFixed(1)} s`)

// One descriptor each way, kept open: reopening the port loses what the host sent meanwhile.
const input = new ReadStream(openSync(GUEST_CHANNEL, 'r'))
// Written from libuv's thread pool, in order: a write to the port blocks until the UART has sent it
// (~450 KB/s under TCG), and a burst of kernel records written inline kept the agent from noticing
// "populated 0" for tens of milliseconds.
const out = createWriteStream('', { fd: openSync(GUEST_CHANNEL, 'w') })
input.setEncoding('utf8')
const stream: Duplex = {
  write: (text) => void out.write(text),
  onData: (fn) => input.on('data', fn),
  offData: (fn) => input.off('data', fn),
}

// The host sent something that is not a frame: say so on the console, where the host's report shows it.
const host = serveOs(os, stream, { uptimeMs, onBroken: (why) => say(`refusing the channel: ${why.message}`) })
await host.ready.asEvent({ release: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), uptimeMs: uptimeMs() })
say(`ready at ${(uptimeMs() / 1000).toFixed(1)} s of guest uptime`)
