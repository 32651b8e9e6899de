/**
 * The agent's end of its channel to the host: the virtio-serial port when the kernel command line
 * says `oomlab.channel=virtio` (see kernel/virtio.ts), else the second UART. One descriptor each way for
 * the UART, kept open: reopening it loses what the host sent meanwhile; a virtio port opens once only.
 */
import { createWriteStream, openSync, read, readFileSync, readdirSync, watch } from 'node:fs'
import { StringDecoder } from 'node:string_decoder'
import { ReadStream } from 'node:tty'
import type { Duplex } from '../../os/wire.js'
import { GUEST_CHANNEL, VIRTIO_CHANNEL_WORD } from './layout.js'

/** How long the virtio port may take to appear after /init loaded its modules. */
const PORT_WAIT_MS = 20_000
/** While the host holds no connection, a read returns at once: the next try waits this long. */
const UNCONNECTED_RETRY_MS = 20

export async function openAgentPort(say: (line: string) => void): Promise<Duplex> {
  return readFileSync('/proc/cmdline', 'utf8').trim().split(/\s+/).includes(VIRTIO_CHANNEL_WORD) ? virtioPort(await virtioPortPath(), say) : uart()
}

function uart(): Duplex {
  const input = new ReadStream(openSync(GUEST_CHANNEL, 'r'))
  // Written from libuv's thread pool, in order: a write to the port blocks until the UART has sent it
  // (~450 KB/s under TCG), and a burst of kernel records written inline kept the agent from noticing
  // "populated 0" for tens of milliseconds.
  const out = createWriteStream('', { fd: openSync(GUEST_CHANNEL, 'w') })
  input.setEncoding('utf8')
  return {
    write: (text) => void out.write(text),
    onData: (fn) => input.on('data', fn),
    offData: (fn) => input.off('data', fn),
  }
}

/** The host's only virtio-serial port (/dev/vportNpM): devtmpfs makes its node once the driver has it. */
async function virtioPortPath(): Promise<string> {
  const find = () => readdirSync('/dev').find((f) => /^vport\d+p\d+$/.test(f))
  const found = find()
  if (found) return `/dev/${found}`
  return new Promise((resolve, reject) => {
    const settle = (f: string | undefined) => {
      clearTimeout(timer)
      watcher.close()
      if (f) resolve(`/dev/${f}`)
      else reject(new Error(`no virtio-serial port appeared in /dev within ${PORT_WAIT_MS / 1000} s (the kernel command line asks for ${VIRTIO_CHANNEL_WORD})`))
    }
    const look = () => {
      const f = find()
      if (f) settle(f)
    }
    const watcher = watch('/dev', look)
    const timer = setTimeout(() => settle(undefined), PORT_WAIT_MS)
    look() // it may have come between the first look and the watch
  })
}

/**
 * A virtio port is a character device node cannot poll: reads block in libuv's thread pool (one thread
 * for good), writes go through a stream in order. A read returns 0 while the host holds no connection.
 */
function virtioPort(path: string, say: (line: string) => void): Duplex {
  const fd = openSync(path, 'r+')
  const out = createWriteStream('', { fd, autoClose: false })
  const listeners = new Set<(chunk: string) => void>()
  const decoder = new StringDecoder('utf8')
  const buf = Buffer.alloc(64 * 1024)
  const pump = () =>
    read(fd, buf, 0, buf.length, null, (err, n) => {
      if (err) return say(`reading ${path} failed: ${err.message}; the channel is closed`)
      if (n === 0) return void setTimeout(pump, UNCONNECTED_RETRY_MS)
      const text = decoder.write(buf.subarray(0, n))
      if (text) for (const l of listeners) l(text)
      pump()
    })
  pump()
  return {
    write: (text) => void out.write(text),
    onData: (fn) => listeners.add(fn),
    offData: (fn) => listeners.delete(fn),
  }
}
