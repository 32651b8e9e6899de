import { statSync, realpathSync } from 'node:fs'
import { join, basename } from 'node:path'

/**
 * The first `name` in PATH that is a real program, not a busybox applet link (busybox's setpriv,
 * for one, cannot change uid). Undefined when there is none.
 */
export function which(name: string, path = process.env.PATH ?? '/usr/bin:/bin'): string | undefined {
  for (const dir of path.split(':')) {
    const p = join(dir, name)
    try {
      if (!statSync(p).isFile()) continue
      if (basename(realpathSync(p)) === 'busybox' && name !== 'busybox') continue
      return p
    } catch {
      /* not here */
    }
  }
  return undefined
}
