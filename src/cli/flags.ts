/**
 * Flags, for every subcommand: declared once with their validators and help, parsed in one place.
 * Every mistake is one line and exit code 2 (UserError), before anything runs.
 */
import { parseArgs } from 'node:util'
import { UserError } from '../util/errors.js'

export interface FlagDef {
  type: 'boolean' | 'string'
  multiple?: boolean
  short?: string
  /** The value's name in the help, e.g. SEC. */
  arg?: string
  help: string
}

export interface CommandDef {
  name: string
  summary: string
  /** What the positionals are, for the usage line (omitted: none are taken). */
  positionals?: string
  flags: Record<string, FlagDef>
  /** The environment variables it reads, each with its meaning. */
  env?: Record<string, string>
  /** Exit codes beyond the common ones. */
  exits?: Record<number, string>
  /** More lines of help after the flags. */
  more?: string
}

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

const HELP: FlagDef = { type: 'boolean', short: 'h', help: 'this help' }

export const COMMON_EXITS: Record<number, string> = { 0: 'success', 1: 'something failed (the reason is printed)', 2: 'bad command line or setting (one line says which)', 130: 'interrupted' }

/** Parses argv for one command: unknown flags, missing values and stray positionals are one line each. */
export function parseFlags(def: CommandDef, argv: string[]): Parsed {
  const options = Object.fromEntries(
    Object.entries({ ...def.flags, help: HELP }).map(([name, f]) => [name, { type: f.type, ...(f.multiple && { multiple: true }), ...(f.short && { short: f.short }) }]),
  )
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UserError(`${def.name}: ${(err as Error).message.split(/\.\s|\n/)[0]} (see oomlab ${def.name} --help)`)
  }
  if (parsed.values.help !== true && def.positionals === undefined && parsed.positionals.length > 0)
    throw new UserError(`${def.name} takes no arguments (got ${JSON.stringify(parsed.positionals.join(' '))}; see oomlab ${def.name} --help)`)
  return { values: parsed.values as Parsed['values'], positionals: parsed.positionals }
}

/** A string flag's value (the last one given). */
export function stringFlag(p: Parsed, name: string): string | undefined {
  const v = p.values[name]
  return Array.isArray(v) ? v.at(-1) : typeof v === 'string' ? v : undefined
}

export function listFlag(p: Parsed, name: string): string[] {
  const v = p.values[name]
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : []
}

/** How a bad value is named: `--jobs "x"` for a flag, `OOMLAB_JOBS="x"` for a variable. */
const named = (what: string, value: string) => `${what}${what.startsWith('--') ? ' ' : '='}${JSON.stringify(value)}`

/** A whole number within [min, max] from a flag or variable (`what` names it: `--jobs` or `OOMLAB_JOBS`). */
export function wholeNumber(what: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\d+$/.test(value) || n < min || n > max) throw new UserError(`${named(what, value)}: expected a whole number from ${min} to ${max}`)
  return n
}

/** One of a fixed set of words. */
export function oneOf<T extends string>(what: string, value: string | undefined, words: readonly T[], fallback: T): T {
  if (value === undefined || value === '') return fallback
  if (!(words as readonly string[]).includes(value)) throw new UserError(`${named(what, value)}: expected ${words.slice(0, -1).join(', ')} or ${words.at(-1)}`)
  return value as T
}

/** A boolean variable: 1/true/yes or 0/false/no (empty is unset). */
export function envSwitch(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined
  if (/^(1|true|yes)$/i.test(value)) return true
  if (/^(0|false|no)$/i.test(value)) return false
  throw new UserError(`${name}=${JSON.stringify(value)}: expected 1 or 0`)
}

/** The help of one command: usage, flags, variables, exit codes. */
export function helpOf(def: CommandDef): string {
  const flags = Object.entries(def.flags).map(([name, f]) => [`--${name}${f.arg ? ` ${f.arg}` : ''}${f.multiple ? ' (repeatable)' : ''}`, f.help] as const)
  const w = Math.max(20, ...flags.map(([l]) => l.length))
  const lines = [`usage: oomlab ${def.name}${Object.keys(def.flags).length ? ' [options]' : ''}${def.positionals ? ` ${def.positionals}` : ''}`, '', def.summary]
  if (flags.length) lines.push('', 'options:', ...flags.map(([l, h]) => `  ${l.padEnd(w)}  ${h}`))
  lines.push(`  ${'-h, --help'.padEnd(w)}  this help`)
  if (def.more) lines.push('', def.more)
  const env = Object.entries(def.env ?? {})
  if (env.length) {
    const we = Math.max(...env.map(([k]) => k.length))
    lines.push('', 'environment:', ...env.map(([k, v]) => `  ${k.padEnd(we)}  ${v}`))
  }
  const exits = { ...COMMON_EXITS, ...def.exits }
  lines.push('', 'exit codes:', ...Object.entries(exits).map(([k, v]) => `  ${k.padStart(3)}  ${v}`))
  return lines.join('\n')
}
