import { homedir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project's root folder (where package.json is). */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** The user's cache folder for kernels, initramfs images and the accelerator probe's answer. */
export function cacheDir(): string {
  if (process.env.OOMLAB_CACHE_DIR) return resolve(process.env.OOMLAB_CACHE_DIR)
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache')
  return join(base, 'oom-group-lab')
}
