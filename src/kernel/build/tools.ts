/** What building a kernel needs on the host: the programs and headers, named in one line when missing. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { which } from '../../util/which.js'

interface Need {
  what: string
  /** Debian's package. */
  pkg: string
  programs?: string[]
  /** Headers, relative to an include folder. */
  headers?: string[]
}

const NEEDS: Need[] = [
  { what: 'a C compiler (gcc)', pkg: 'gcc', programs: ['gcc'] },
  { what: 'make', pkg: 'make', programs: ['make'] },
  { what: 'flex', pkg: 'flex', programs: ['flex'] },
  { what: 'bison', pkg: 'bison', programs: ['bison'] },
  { what: 'bc', pkg: 'bc', programs: ['bc'] },
  { what: 'libelf headers', pkg: 'libelf-dev', headers: ['gelf.h', 'libelf.h'] },
  { what: 'libssl headers', pkg: 'libssl-dev', headers: ['openssl/opensslv.h'] },
]

/** Unpacking a source tarball. */
const TARBALL_NEEDS: Need[] = [
  { what: 'tar', pkg: 'tar', programs: ['tar'] },
  { what: 'xz', pkg: 'xz-utils', programs: ['xz'] },
]

export const INCLUDE_DIRS = ['/usr/include', '/usr/include/x86_64-linux-gnu', '/usr/local/include']

export interface ToolCheck {
  missing: string[]
  packages: string[]
}

export function checkBuildTools(o: { tarball?: boolean; path?: string; includeDirs?: readonly string[] } = {}): ToolCheck {
  const dirs = o.includeDirs ?? INCLUDE_DIRS
  const missing = [...NEEDS, ...(o.tarball ? TARBALL_NEEDS : [])].filter(
    (n) => !(n.programs ?? []).every((p) => which(p, o.path)) || !(n.headers ?? []).every((h) => dirs.some((d) => existsSync(join(d, h)))),
  )
  return { missing: missing.map((n) => n.what), packages: missing.map((n) => n.pkg) }
}

/** One line: what is missing and how to get it; undefined when nothing is. */
export function missingToolsLine(c: ToolCheck): string | undefined {
  if (c.missing.length === 0) return undefined
  return `cannot build a kernel here: ${c.missing.join(', ')} missing; install with \`apt-get install ${c.packages.join(' ')}\``
}
