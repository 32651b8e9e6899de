/** From a run command's parsed flags to what it asks of the run (src/run/resolve.ts checks the rest). */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { SPEC_FILE } from '../report/paths.js'
import { UserError } from '../util/errors.js'
import type { RunRequest } from '../run/resolve.js'
import { listFlag, stringFlag, wholeNumber, type Parsed } from './flags.js'

export const MATRIX_DEFAULT = ['bullseye', 'bookworm', 'trixie', 'sid']

/** A flag's whole number within [min, max], or undefined when the flag is absent. */
export const positiveInt = (flag: string, value: string | undefined, min: number, max: number) => wholeNumber(`--${flag}`, value, min, max)

/** The flags every run command shares. */
function common(p: Parsed): Omit<RunRequest, 'selectSpecs' | 'canStartScope' | 'by'> {
  const s = (n: string) => stringFlag(p, n)
  const append = s('append')
  return {
    ...(s('accel') !== undefined && { accel: s('accel')! }),
    ...(s('memory') !== undefined && { memoryMiB: positiveInt('memory', s('memory'), 512, 65536)! }),
    ...(s('cpus') !== undefined && { cpus: positiveInt('cpus', s('cpus'), 1, 64)! }),
    ...(append !== undefined && { append: append.split(/\s+/).filter(Boolean) }),
    ...(s('boot-timeout') !== undefined && { bootTimeoutMs: positiveInt('boot-timeout', s('boot-timeout'), 1, 3600)! * 1000 }),
    ...(s('timeout') !== undefined && { runTimeoutMs: positiveInt('timeout', s('timeout'), 1, 86400)! * 1000 }),
    ...(s('jobs') !== undefined && { jobs: positiveInt('jobs', s('jobs'), 1, 64)! }),
    ...(s('report') !== undefined && { report: s('report')! }),
    ...(p.values.refresh === true && { refresh: true }),
  }
}

/** `reproduce` and `test`: positionals are spec files of one's own (paths) or filters of the article's. */
export function reproduceRequest(p: Parsed): RunRequest {
  const s = (n: string) => stringFlag(p, n)
  const isOwnSpec = (f: string) => f.includes('/') || (SPEC_FILE.test(f) && existsSync(f))
  const kernel = s('kernel')
  const image = s('kernel-image')
  if (kernel !== undefined && image !== undefined) throw new UserError('--kernel and --kernel-image exclude each other')
  return {
    ...common(p),
    ...(p.values.vm === true && { vm: true }),
    ...(p.values.native === true && { native: true }),
    ...(s('cgroup-root') !== undefined && { cgroupRoot: s('cgroup-root')! }),
    ...(kernel !== undefined && { kernels: [{ name: kernel }] }),
    ...(image !== undefined && { kernels: [{ name: resolve(image), image: resolve(image) }] }),
    filters: p.positionals.filter((f) => !isOwnSpec(f)),
    specFiles: p.positionals.filter(isOwnSpec),
    selectSpecs: true,
    canStartScope: true,
    by: 'cli',
  }
}

const isSpecPath = (f: string) => SPEC_FILE.test(f) && (f.includes('/') || existsSync(f))

/** `matrix`: positionals are kernels, or spec files of one's own; --kernel-image adds images; guests always. */
export function matrixRequest(p: Parsed): RunRequest {
  const images = listFlag(p, 'kernel-image').map((i) => resolve(i))
  const kernels = p.positionals.filter((f) => !isSpecPath(f))
  const names = kernels.length || images.length ? kernels : MATRIX_DEFAULT
  return {
    ...common(p),
    vm: true,
    kernels: [...names.map((name) => ({ name })), ...images.map((image) => ({ name: image, image }))],
    filters: listFlag(p, 'spec'),
    specFiles: p.positionals.filter(isSpecPath),
    selectSpecs: true,
    canStartScope: false,
    by: 'cli',
  }
}
