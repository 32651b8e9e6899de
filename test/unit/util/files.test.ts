// The shared file primitives: sha256 of a file, and writes a reader sees whole or not at all.
import { createHash } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { dir } from 'tmp-promise'
import { describe, expect, it } from 'vitest'
import { readJson, replaceAtomically, sha256File, writeJsonAtomic } from '../../../src/util/files.js'

describe('file primitives', () => {
  it('hashes a file across its read chunks as one', async () => {
    const d = await dir({ unsafeCleanup: true })
    try {
      const data = Buffer.alloc(3 * (1 << 20) + 17, 7)
      await writeFile(join(d.path, 'f'), data)
      expect(await sha256File(join(d.path, 'f'))).toBe(createHash('sha256').update(data).digest('hex'))
    } finally {
      await d.cleanup()
    }
  })

  it('keeps the old file and leaves no temp file when a write fails half way', async () => {
    const d = await dir({ unsafeCleanup: true })
    try {
      const path = join(d.path, 'record.json')
      await writeJsonAtomic(path, { n: 1 })
      const failing = replaceAtomically(path, async (temp) => {
        await writeFile(temp, '{"n": 2, "cut')
        throw new Error('disk full')
      })
      await expect(failing).rejects.toThrow('disk full')
      expect(await readJson(path)).toEqual({ n: 1 })
      expect(await readdir(d.path)).toEqual(['record.json'])
      await writeJsonAtomic(path, { n: 3 }, { durable: true })
      expect(await readFile(path, 'utf8')).toBe('{\n  "n": 3\n}\n')
      expect(await readJson(join(d.path, 'missing.json'))).toBeUndefined()
    } finally {
      await d.cleanup()
    }
  })
})
