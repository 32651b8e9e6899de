/** oomlab kernel build DIR: a kernel from a source tree for the guests, built or reused; its bzImage's path on stdout. */
import { UserError } from '../util/errors.js'
import { buildKernel } from '../kernel/build/build.js'
import { formatElapsed } from '../kernel/build/progress.js'
import { log, progress, endProgress } from './experiments.js'
import { stringFlag, wholeNumber, type Parsed } from './flags.js'

export async function kernelCommand(p: Parsed, signal: AbortSignal): Promise<number> {
  const [sub, src, ...more] = p.positionals
  if (sub !== 'build' || src === undefined || more.length > 0) throw new UserError('usage: oomlab kernel build DIR|TARBALL (see oomlab kernel --help)')
  const jobs = wholeNumber('--jobs', stringFlag(p, 'jobs'), 1, 256)
  const t0 = performance.now()
  const built = await buildKernel(src, { log: (line) => log(`kernel build: ${line}`), progress, signal, ...(jobs !== undefined && { jobs }) })
  endProgress()
  const r = built.record
  const facts = `initramfs ${r.facts.initramfs.join('+') || 'none'}, virtio-serial ${r.facts.virtioSerial ? 'built in' : 'absent'}`
  log(`kernel ${r.release}: ${built.reused ? 'reused' : 'built'} in ${formatElapsed(performance.now() - t0)} (key ${r.key}; ${facts}; build folder ${built.buildDir})`)
  console.log(built.kernel.path)
  return 0
}
