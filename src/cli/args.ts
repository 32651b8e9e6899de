/** From a run command's parsed flags to what it asks of the run (src/run/resolve.ts checks the rest). */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { SPEC_FILE } from '../report/paths.js'
import { UserError } from '../util/errors.js'
import { kernelTargetOf, type RunRequest } from '../run/resolve.js'
import { listFlag, stringFlag, wholeNumber, type Parsed } from './flags.js'

/** bookworm+memory_localevents: spec 14's count with the mount option, checked in every default matrix. */
export const MATRIX_DEFAULT = ['bullseye', 'bookworm', 'bookworm+memory_localevents', 'trixie', 'sid']

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
  const src = s('kernel-src')
  if ([kernel, image, src].filter((x) => x !== undefined).length > 1) throw new UserError('--kernel, --kernel-image and --kernel-src exclude each other')
  return {
    ...common(p),
    ...(p.values.vm === true && { vm: true }),
    ...(p.values.native === true && { native: true }),
    ...(s('cgroup-root') !== undefined && { cgroupRoot: s('cgroup-root')! }),
    ...(kernel !== undefined && { kernels: [kernelTargetOf(kernel)] }),
    ...(image !== undefined && { kernels: [{ name: resolve(image), image: resolve(image) }] }),
    ...(src !== undefined && { kernels: [{ name: resolve(src), src: resolve(src) }] }),
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
  const sources = listFlag(p, 'kernel-src').map((d) => resolve(d))
  const kernels = p.positionals.filter((f) => !isSpecPath(f))
  const names = kernels.length || images.length || sources.length ? kernels : MATRIX_DEFAULT
  return {
    ...common(p),
    vm: true,
    kernels: [...names.map(kernelTargetOf), ...images.map((image) => ({ name: image, image })), ...sources.map((src) => ({ name: src, src }))],
    filters: listFlag(p, 'spec'),
    specFiles: p.positionals.filter(isSpecPath),
    selectSpecs: true,
    canStartScope: false,
    by: 'cli',
  }
}
