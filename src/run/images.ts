/**
 * The guest image a spec runs in: the lab's, unless its first comment names another with
 * `@oomlab-image NAME` (as vitest's `@vitest-environment` names an environment): the container runtime
 * specs' `runtimes`. One declaration, read by the CLI (to prepare that image's guest before vitest starts)
 * and by the worker (to restore it).
 */
import { openSync, readSync, closeSync } from 'node:fs'
import { UserError } from '../util/errors.js'
import { RUNTIMES_IMAGE } from '../runtime/image.js'
import type { ImageAddition } from '../vm/image/recipes.js'

/** The images a spec may name, each the lab guest's image with an addition. */
const IMAGES: Record<string, ImageAddition> = { [RUNTIMES_IMAGE.name]: RUNTIMES_IMAGE }

const TAG = /@oomlab-image\s+([a-z][a-z0-9-]*)/

/** What a spec's first comment asks for (its first 4 KiB are read), or undefined: the lab's image. */
export function specImage(file: string): string | undefined {
  const buf = Buffer.alloc(4096)
  let n = 0
  try {
    const fd = openSync(file, 'r')
    try {
      n = readSync(fd, buf, 0, buf.length, 0)
    } finally {
      closeSync(fd)
    }
  } catch {
    return undefined
  }
  const head = buf.subarray(0, n).toString('utf8')
  const comment = head.match(/^\s*(\/\*[\s\S]*?\*\/|(?:\/\/.*\n)+)/)?.[1] ?? ''
  const name = comment.match(TAG)?.[1]
  if (name !== undefined) imageAddition(name, file)
  return name
}

/** The addition an image name stands for; an unknown name is one line naming the spec. */
export function imageAddition(name: string, file = 'a spec'): ImageAddition {
  const a = IMAGES[name]
  if (!a) throw new UserError(`${file} asks for the guest image "${name}" (@oomlab-image); the images are: ${Object.keys(IMAGES).join(', ')}`)
  return a
}

/** The images a run's spec files ask for, beside the lab's, each once. */
export function imagesOf(specs: readonly string[]): string[] {
  return [...new Set(specs.map(specImage).filter((x): x is string => x !== undefined))].sort()
}

/** The spec files among `specs` that run in the lab's own image: the article's and the five beyond it. */
export function labSpecs(specs: readonly string[]): string[] {
  return specs.filter((s) => specImage(s) === undefined)
}
