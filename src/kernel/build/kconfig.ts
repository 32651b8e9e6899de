/**
 * Kconfig files as data: a `.config` or a fragment read into symbol -> value ("y", "m", "0x10", "\"utf8\"",
 * or null for `# CONFIG_X is not set`), a fragment merged over a config (its lines win, as in the
 * kernel's scripts/kconfig/merge_config.sh), and what a configured kernel says of itself.
 */

export type Kconfig = Map<string, string | null>

const SET = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/
const UNSET = /^# CONFIG_([A-Za-z0-9_]+) is not set$/

/** The symbols a config or fragment sets, in order; comments and blank lines carry nothing. */
export function parseKconfig(text: string): Kconfig {
  const out: Kconfig = new Map()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    const set = SET.exec(line)
    if (set) out.set(set[1]!, set[2]!)
    else {
      const unset = UNSET.exec(line)
      if (unset) out.set(unset[1]!, null)
    }
  }
  return out
}

const lineOf = (symbol: string, value: string | null) => (value === null ? `# CONFIG_${symbol} is not set` : `CONFIG_${symbol}=${value}`)

/**
 * `config` with every symbol of `fragment` set as the fragment says: a symbol already there is
 * rewritten in place, a new one appended. `make olddefconfig` then settles the dependencies.
 */
export function mergeFragment(config: string, fragment: string): string {
  const wanted = parseKconfig(fragment)
  const done = new Set<string>()
  const lines = config.split('\n').map((raw) => {
    const m = SET.exec(raw.trim()) ?? UNSET.exec(raw.trim())
    const symbol = m?.[1]
    if (symbol === undefined || !wanted.has(symbol)) return raw
    done.add(symbol)
    return lineOf(symbol, wanted.get(symbol)!)
  })
  while (lines.length > 0 && lines.at(-1) === '') lines.pop()
  const added = [...wanted].filter(([s]) => !done.has(s)).map(([s, v]) => lineOf(s, v))
  return `${[...lines, ...added].join('\n')}\n`
}

export interface Unmet {
  symbol: string
  wanted: string | null
  /** What the final config has: undefined when the tree's Kconfig does not know the symbol (or its menu is off). */
  got: string | null | undefined
}

/**
 * The fragment's settings the final config does not have: a symbol this version lacks, or one whose
 * dependencies kept it from the value asked. A symbol asked off and absent counts as off.
 */
export function unmetSettings(fragment: Kconfig, final: Kconfig): Unmet[] {
  const out: Unmet[] = []
  for (const [symbol, wanted] of fragment) {
    const got = final.get(symbol)
    if (wanted === null ? got === undefined || got === null || got === 'n' : got === wanted) continue
    out.push({ symbol, wanted, got })
  }
  return out
}

/** What the guest cannot do without: a build whose config lacks one of these fails before it compiles. */
export const REQUIRED = ['MEMCG', 'CGROUPS', 'BLK_DEV_INITRD', 'DEVTMPFS', 'TMPFS', 'PROC_FS', 'SYSFS', 'SERIAL_8250_CONSOLE', 'PRINTK', 'INOTIFY_USER', 'UNIX', 'INET'] as const

/** The required symbols a final config does not build in. */
export function missingRequired(final: Kconfig): string[] {
  return REQUIRED.filter((s) => final.get(s) !== 'y')
}

/** What a built kernel's config says that preparing its guest needs. */
export interface ConfigFacts {
  /** The initramfs compressions the kernel unpacks. */
  initramfs: ('gzip' | 'zstd')[]
  /** virtio-serial built in (virtio PCI and the console): the agent's fast channel. */
  virtioSerial: boolean
  /** /proc/config.gz in the guest. */
  ikconfig: boolean
}

export function configFacts(c: Kconfig): ConfigFacts {
  const y = (s: string) => c.get(s) === 'y'
  return {
    initramfs: [...(y('RD_GZIP') ? (['gzip'] as const) : []), ...(y('RD_ZSTD') ? (['zstd'] as const) : [])],
    virtioSerial: y('VIRTIO_PCI') && y('VIRTIO_CONSOLE'),
    ikconfig: y('IKCONFIG_PROC'),
  }
}

/** One line on what the fragment asked and the tree did not take, e.g. "MEMCG_SWAP (unknown to this tree)". */
export function describeUnmet(u: Unmet[]): string {
  return u.map((x) => `${x.symbol}${x.got === undefined ? ' (unknown to this tree)' : ` (${x.got ?? 'not set'}, not ${x.wanted ?? 'off'})`}`).join(', ')
}
