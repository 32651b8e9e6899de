import { describe, it, expect } from 'vitest'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { projectRoot } from '../../../src/util/paths.js'
import { oomlab } from '../../helpers/oomlab.js'

describe('the CLI as bin/oomlab.mjs runs it from the repository (one esbuild bundle)', () => {
  it('finds the project from src/util/paths.ts alone: no other source reads import.meta.url', () => {
    // The bundle defines import.meta.url as paths.ts's URL; a second reader would silently get that one.
    const readers = readdirSync(join(projectRoot, 'src'), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.ts'))
      .filter((f) => readFileSync(join(projectRoot, 'src', f), 'utf8').split('\n').some((l) => /import\.meta\.url/.test(l.replace(/(["'`])(?:\\.|(?!\1).)*\1/g, '""'))))
    expect(readers).toEqual(['util/paths.ts'])
  })

  it('runs from one bundle, rebuilt only when a source changed, that places the project at the sources', async () => {
    const r = await oomlab(['--help'], { cwd: projectRoot })
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toContain('reproduce')
    const dir = join(projectRoot, 'node_modules/.cache/oomlab-cli')
    const bundles = readdirSync(dir).filter((f) => f.endsWith('.mjs'))
    expect(bundles).toHaveLength(1)
    expect(readFileSync(join(dir, bundles[0]!), 'utf8')).toContain(JSON.stringify(pathToFileURL(join(projectRoot, 'src/util/paths.ts')).href))
  })
})
