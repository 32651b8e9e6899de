/**
 * Which of Debian's kernels a guest reaches over virtio-serial, and with which modules, from what
 * their packages hold (test/fixtures/kernel-packages: real modules.builtin files and module names).
 */
import { describe, expect, it } from 'vitest'
import { execa } from 'execa'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { withDir } from 'tmp-promise'
import { findVirtio, writeModulesCpio, GUEST_MODULES_DIR } from '../../../src/kernel/virtio.js'

const pkg = (release: string) => fileURLToPath(new URL(`../../fixtures/kernel-packages/${release}`, import.meta.url))

describe('virtio-serial in a kernel\'s packages', () => {
  it('bookworm (6.1) has it as modules: all six, in load order', async () => {
    const found = await findVirtio([pkg('6.1.0-50-cloud-amd64')])
    expect(found?.support).toEqual({ kind: 'modules', modules: ['virtio', 'virtio_ring', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_console'] })
    expect(found?.files.get('virtio_console')).toMatch(/kernel\/drivers\/char\/virtio_console\.ko$/)
  })

  it('bullseye (5.10) has no virtio_pci_*_dev modules: the four it has', async () => {
    expect((await findVirtio([pkg('5.10.0-32-cloud-amd64')]))?.support).toEqual({ kind: 'modules', modules: ['virtio', 'virtio_ring', 'virtio_pci', 'virtio_console'] })
  })

  it('trixie (6.12) has it built in, under usr/lib/modules: nothing to load', async () => {
    expect((await findVirtio([pkg('6.12.117+deb13-cloud-amd64')]))?.support).toEqual({ kind: 'builtin' })
  })

  it('a package without modules.builtin (sid\'s linux-binary: the vmlinuz alone) says nothing', async () => {
    await withDir(async ({ path }) => {
      mkdirSync(join(path, 'usr/lib/modules/7.2.13+deb14-cloud-amd64'), { recursive: true })
      writeFileSync(join(path, 'usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz'), '')
      expect(await findVirtio([path])).toBeUndefined()
    }, { unsafeCleanup: true })
  })

  it('a kernel with neither the module nor the driver built in: absent, naming what is missing', async () => {
    await withDir(async ({ path }) => {
      mkdirSync(join(path, 'lib/modules/6.1.0-x'), { recursive: true })
      writeFileSync(join(path, 'lib/modules/6.1.0-x/modules.builtin'), 'kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n')
      expect((await findVirtio([path]))?.support).toEqual({ kind: 'absent', why: 'the kernel has neither built in nor as a module: virtio_pci, virtio_console' })
    }, { unsafeCleanup: true })
  })

  it('packs the modules and their load order into a cpio the guest\'s /init reads', async () => {
    const found = (await findVirtio([pkg('6.1.0-50-cloud-amd64')]))!
    await withDir(async ({ path }) => {
      const out = join(path, 'virtio.cpio')
      await writeModulesCpio(found, out)
      const listed = (await execa('cpio', ['-it', '--quiet'], { inputFile: out })).stdout.split('\n')
      expect(listed).toEqual([GUEST_MODULES_DIR, ...found.files.keys()].map((n, i) => (i === 0 ? n : `${GUEST_MODULES_DIR}/${n}.ko`)).concat(`${GUEST_MODULES_DIR}/order`))
      const order = (await execa('cpio', ['-i', '--quiet', '--to-stdout', `${GUEST_MODULES_DIR}/order`], { inputFile: out })).stdout
      expect(order.split('\n')).toEqual(['virtio', 'virtio_ring', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_console'])
    }, { unsafeCleanup: true })
  })
})
