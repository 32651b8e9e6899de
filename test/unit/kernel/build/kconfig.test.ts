/**
 * The fragment merged over a tree's defconfig, and what a configured kernel says of itself, on real
 * configs (test/fixtures/kbuild): Debian's linux-source-6.1 (6.1.192) after `make x86_64_defconfig`,
 * and after the fragment and `make olddefconfig`; 4.19.304's .config (../shared/kernels).
 */
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { projectRoot } from '../../../../src/util/paths.js'
import { configFacts, describeUnmet, mergeFragment, missingRequired, parseKconfig, unmetSettings } from '../../../../src/kernel/build/kconfig.js'
import { FRAGMENT } from '../../../../src/kernel/build/build.js'

const fixture = (path: string) => readFileSync(join(projectRoot, 'test/fixtures/kbuild', path), 'utf8')
const fragment = readFileSync(FRAGMENT, 'utf8')

describe('the fragment merged over x86_64_defconfig', () => {
  const defconfig = fixture('6.1.192/x86_64_defconfig.config')
  const merged = parseKconfig(mergeFragment(defconfig, fragment))

  it('sets every symbol as the fragment says, whether the defconfig had it on, off or not at all', () => {
    const wanted = parseKconfig(fragment)
    for (const [symbol, value] of wanted) expect([symbol, merged.get(symbol)]).toEqual([symbol, value])
    // On in the defconfig, off in the fragment; off (absent) in the defconfig, on in the fragment.
    expect(parseKconfig(defconfig).get('DRM')).toBe('y')
    expect(merged.get('DRM')).toBeNull()
    expect(parseKconfig(defconfig).get('MEMCG')).toBeNull()
    expect(merged.get('MEMCG')).toBe('y')
  })

  it('leaves every other symbol as the defconfig has it, in place', () => {
    const before = parseKconfig(defconfig)
    const wanted = parseKconfig(fragment)
    const others = [...before].filter(([s]) => !wanted.has(s))
    expect(others.length).toBeGreaterThan(1000)
    for (const [s, v] of others) expect(merged.get(s)).toBe(v)
    // Rewritten in place: the defconfig's lines keep their order; one it lacks (IKCONFIG_PROC shows only under IKCONFIG) comes after.
    const text = mergeFragment(defconfig, fragment)
    expect(text.indexOf('CONFIG_MEMCG=y')).toBe(defconfig.indexOf('# CONFIG_MEMCG is not set'))
    expect(text.indexOf('CONFIG_IKCONFIG_PROC=y')).toBeGreaterThan(text.indexOf('# CONFIG_DRM is not set'))
    expect(text.match(/CONFIG_DRM[= ]/g)).toHaveLength(1)
  })
})

describe('what the final config took', () => {
  it("6.1.192: everything but the symbols this tree's Kconfig decides otherwise", () => {
    const final = parseKconfig(fixture('6.1.192/config'))
    const unmet = unmetSettings(parseKconfig(fragment), final)
    // MEMCG_SWAP went in 6.1 (memcg swap accounting is always there since); the rest is the fragment's.
    expect(describeUnmet(unmet)).toBe('MEMCG_SWAP (unknown to this tree)')
    expect(missingRequired(final)).toEqual([])
    expect(configFacts(final)).toEqual({ initramfs: ['gzip', 'zstd'], virtioSerial: true, ikconfig: true })
  })

  it('4.19.304: a gzip initramfs only (RD_ZSTD came in 5.9), virtio-serial built in', () => {
    const final = parseKconfig(fixture('4.19.304/config'))
    expect(configFacts(final)).toEqual({ initramfs: ['gzip'], virtioSerial: true, ikconfig: true })
    expect(unmetSettings(parseKconfig(fragment), final).map((u) => u.symbol)).toContain('RD_ZSTD')
  })

  it('names a required symbol a config lacks', () => {
    const final = parseKconfig(fixture('6.1.192/config').replace('CONFIG_MEMCG=y', '# CONFIG_MEMCG is not set'))
    expect(missingRequired(final)).toEqual(['MEMCG'])
    expect(unmetSettings(parseKconfig(fragment), final).map((u) => u.symbol)).toContain('MEMCG')
  })
})
