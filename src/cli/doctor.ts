/**
 * `oomlab doctor`: what each way of running needs, checked, one line each, and which way `npm test` takes.
 * It only reads (the oom.group probe creates and removes one cgroup of its own).
 */
import { accessSync, constants } from 'node:fs'
import { execa } from 'execa'
import { preflight, formatCheck, type Check } from '../host/preflight.js'
import { which } from '../util/which.js'
import { errorMessage } from '../util/errors.js'
import { staticBusybox } from '../vm/image/recipes.js'
import { envSwitch } from './flags.js'

async function tool(name: string, args: string[], pkg: string, why: string, fix = `apt-get install ${pkg} (or run scripts/setup.sh)`): Promise<Check> {
  const path = which(name)
  if (!path) return { name, ok: false, detail: `not found in PATH (${why})`, fix }
  const r = await execa(path, args, { reject: false, timeout: 10_000 })
  return r.exitCode === 0 ? { name, ok: true, detail: String(r.stdout).split('\n')[0] || path } : { name, ok: false, detail: `\`${name} ${args.join(' ')}\` failed (exit ${r.exitCode})`, fix: `apt-get install --reinstall ${pkg}` }
}

/** What guests need on this host: QEMU, the programs the guest image is built from, and an accelerator. */
export async function guestChecks(): Promise<Check[]> {
  const checks = [
    await tool('qemu-system-x86_64', ['--version'], 'qemu-system-x86', 'runs the guests'),
    await tool('zstd', ['--version'], 'zstd', 'compresses the guest image and unpacks kernels'),
    await tool('stress-ng', ['--version'], 'stress-ng', "the article's workload, copied into the guest"),
  ]
  try {
    checks.push({ name: 'busybox', ok: true, detail: `${await staticBusybox()} (static: the guest's /init)` })
  } catch (err) {
    checks.push({ name: 'busybox', ok: false, detail: errorMessage(err) })
  }
  let kvm = false
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK)
    kvm = true
  } catch {
    /* TCG */
  }
  checks.push({ name: 'accelerator', ok: true, detail: kvm ? '/dev/kvm is there: a probe guest decides KVM or TCG on the first run (and is remembered)' : 'TCG (QEMU\'s emulation): /dev/kvm is not available; slower, still real' })
  return checks
}

/**
 * What the container runtime specs (20-24) run natively: Debian's runc, crun, conmon and LXC from this
 * host's PATH. In guests they come with the runtimes image instead (Debian 12's packages, fetched once).
 */
export async function runtimeChecks(): Promise<Check[]> {
  const checks: Check[] = []
  for (const [name, pkg, specs, why] of [['runc', 'runc', 'specs 20-23', ''], ['crun', 'crun', 'specs 20-23', ''], ['conmon', 'conmon', 'specs 20-23', ': starts runc and crun as CRI-O does'], ['lxc-execute', 'lxc', 'spec 24', '']] as const)
    checks.push(await tool(name, ['--version'], pkg, `${specs}${why}`, `apt-get install ${pkg} (or run ${specs} in guests: --vm)`))
  return checks
}

export async function doctor(): Promise<number> {
  console.log('natively (this host\'s kernel):')
  const native = await preflight(undefined, process.env.OOMLAB_CGROUP_PARENT || undefined)
  for (const c of native) console.log(`  ${formatCheck(c)}`)
  console.log('container runtimes, natively (specs 20-24; guests carry their own, from Debian 12\'s packages):')
  const runtimes = await runtimeChecks()
  for (const c of runtimes) console.log(`  ${formatCheck(c)}`)
  console.log('in guests (QEMU):')
  const guest = await guestChecks()
  for (const c of guest) console.log(`  ${formatCheck(c)}`)
  const nativeOk = native.every((c) => c.ok)
  const guestOk = guest.every((c) => c.ok)
  const forced = envSwitch('OOMLAB_VM', process.env.OOMLAB_VM) === true
  const lacking = runtimes.filter((c) => !c.ok).map((c) => c.name)
  if (nativeOk && !forced) console.log(`\`npm test\` runs the experiments natively here${lacking.length ? `; the container runtime specs fail without ${lacking.join(', ')} (see above)` : ''}.`)
  else if (guestOk) console.log(`\`npm test\` runs the experiments in QEMU guests here${forced ? ' (OOMLAB_VM=1)' : ', as this host cannot run them natively'}.`)
  else console.log('Neither way can run here: fix a FAIL line above (scripts/setup.sh installs what guests need).')
  return (nativeOk && !forced) || guestOk ? 0 : 1
}
