/** oomlab cache [prune]: what the cache holds (sizes, ages, what can no longer be used), and pruning it. */
import { cacheLimit, formatBytes, listCache, pruneCache, UNLIMITED, type CacheEntry } from '../vm/cache.js'
import { qemuBuildId } from '../vm/snapshot/store.js'
import { cacheDir } from '../util/paths.js'
import { which } from '../util/which.js'
import { UserError } from '../util/errors.js'
import { kernelReleaseOf } from '../kernel/resolve.js'
import { kernelTargetOf } from '../run/resolve.js'

const age = (ms: number, now: number) => {
  const s = Math.max(0, (now - ms) / 1000)
  return s < 3600 ? `${Math.round(s / 60)} min` : s < 48 * 3600 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`
}

function table(entries: CacheEntry[], now: number): string[] {
  return entries.map((e) => `  ${e.kind.padEnd(9)} ${e.id.padEnd(36)} ${formatBytes(e.bytes).padStart(9)}  made ${age(e.madeMs, now).padStart(6)} ago, used ${age(e.usedMs, now).padStart(6)} ago  ${e.stale ? `STALE: ${e.stale}` : e.about}`)
}

/**
 * `oomlab cache key --kernel NAME`: `kernel=<release>`, the release a name stands for now (asking the mirror
 * for a suite): the key under which CI keeps the kernel between jobs, in the form of $GITHUB_OUTPUT.
 */
async function key(argv: string[]): Promise<number> {
  const [flag, name, ...rest] = argv
  if (flag !== '--kernel' || name === undefined || rest.length > 0) throw new UserError('usage: oomlab cache key --kernel NAME')
  // A cell (bookworm+memory_localevents) boots its kernel's release.
  const kernel = kernelTargetOf(name).kernel ?? name
  console.log(`kernel=${await kernelReleaseOf(kernel, { log: (line) => process.stderr.write(`oomlab: ${line}\n`) })}`)
  return 0
}

export async function cache(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === 'key') return key(rest)
  if ((sub !== undefined && sub !== 'prune') || rest.length > 0) throw new UserError(`oomlab cache [prune | key --kernel NAME]: unexpected ${JSON.stringify(argv.join(' '))}`)
  const dir = cacheDir()
  const limit = cacheLimit()
  const qemu = which('qemu-system-x86_64')
  const qemuId = qemu ? await qemuBuildId(qemu, dir) : undefined
  const now = Date.now()
  if (sub === 'prune') {
    const gone = await pruneCache(dir, { ...(qemuId && { qemuId }) })
    for (const l of table(gone, now)) console.log(`removed${l}`)
    const freed = gone.reduce((s, e) => s + e.bytes, 0)
    console.log(gone.length === 0 ? `oomlab: nothing in ${dir} is stale` : `oomlab: removed ${gone.length} entr${gone.length === 1 ? 'y' : 'ies'}, ${formatBytes(freed)}`)
    return 0
  }
  const entries = await listCache(dir, qemuId)
  const total = entries.filter((e) => !UNLIMITED.includes(e.kind)).reduce((s, e) => s + e.bytes, 0)
  const builds = entries.filter((e) => UNLIMITED.includes(e.kind)).reduce((s, e) => s + e.bytes, 0)
  console.log(`${dir}: ${formatBytes(total)}${limit > 0 ? ` of a ${formatBytes(limit)} limit (OOMLAB_CACHE_LIMIT)` : ' (no limit: OOMLAB_CACHE_LIMIT=0)'}${builds ? `; kernel build folders and unpacked sources, not under the limit: ${formatBytes(builds)}` : ''}`)
  for (const l of table(entries.sort((a, b) => b.usedMs - a.usedMs), now)) console.log(l)
  const stale = entries.filter((e) => e.stale !== undefined)
  if (stale.length > 0) console.log(`${stale.length} stale (${formatBytes(stale.reduce((s, e) => s + e.bytes, 0))}): \`oomlab cache prune\` removes them`)
  return 0
}
