/**
 * The guest agent: the last step of a lab guest's /init. It serves this machine's Os (LocalOs) to the
 * host over the second serial port, and pushes the kernel log's records as they come. A snapshot of
 * the guest is taken while it waits here, so every restored guest starts at this point, pristine.
 */
import { openSync, writeSync, readFileSync } from 'node:fs'
import { ReadStream } from 'node:tty'
import { LocalOs } from '../../os/local.js'
import { serveOs } from '../../os/serve.js'
import { rehearse } from './rehearse.js'
import type { Duplex } from '../../os/wire.js'
import { GUEST_CHANNEL } from './layout.js'

const uptimeMs = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000)
const say = (line: string) => process.stdout.write(`oomlab agent: ${line}\n`)

/** Writes all of `text`, however the port takes it (a tty may accept part of a large write). */
function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text)
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off)
}

const os = new LocalOs()
// Follow the kernel log from boot, so a restored guest does not start a reader first.
await os.prestartKernelLog()
const t0 = uptimeMs()
await rehearse(os, uptimeMs)
say(`rehearsed an experiment in ${((uptimeMs() - t0) / 1000).toFixed(1)} s`)

// One descriptor each way, kept open: reopening the port loses what the host sent meanwhile.
const input = new ReadStream(openSync(GUEST_CHANNEL, 'r'))
const out = openSync(GUEST_CHANNEL, 'w')
input.setEncoding('utf8')
const stream: Duplex = {
  write: (text) => writeAll(out, text),
  onData: (fn) => input.on('data', fn),
  offData: (fn) => input.off('data', fn),
}

// The host sent something that is not a frame: say so on the console, where the host's report shows it.
const host = serveOs(os, stream, { uptimeMs, onBroken: (why) => say(`refusing the channel: ${why.message}`) })
await host.ready.asEvent({ release: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), uptimeMs: uptimeMs() })
say(`ready at ${(uptimeMs() / 1000).toFixed(1)} s of guest uptime`)
