#!/usr/bin/env node
// From the repository, the TypeScript CLI through tsx's loader (no build step); from the installed
// package, its compiled copy in dist/ (the package ships no sources).
import { existsSync } from 'node:fs'

const sources = new URL('../src/cli/main.ts', import.meta.url)
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api')
  register()
  await import(sources.href)
} else {
  await import('../dist/src/cli/main.js')
}
