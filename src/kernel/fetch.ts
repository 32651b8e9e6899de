/**
 * One Debian kernel package made bootable: downloaded and unpacked into a temp folder, its vmlinuz
 * checked, its virtio-serial modules found (or noted as absent), and all of it put in the store.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { withDir } from 'tmp-promise'
import { UserError, errorMessage } from '../util/errors.js'
import { downloadAndExtract, findVmlinuz, showPackage, type AptContext, type AptSuite, type PackageInfo } from './apt.js'
import { inspectBzImage } from './bzimage.js'
import type { KernelImage } from './image.js'
import { storeKernel, VIRTIO_CPIO } from './store.js'
import { findVirtio, writeModulesCpio, type VirtioSupport } from './virtio.js'

/** Downloads the package (and, for a stub image package, the linux-binary one) and stores the vmlinuz. */
export async function fetchKernel(ctx: AptContext & { spec: string }, apt: AptSuite, pkg: PackageInfo): Promise<KernelImage> {
  return withDir(
    async ({ path: workDir }) => {
      let vmlinuz = await findVmlinuz(await downloadAndExtract(ctx, apt, pkg, workDir))
      if (!vmlinuz) {
        // sid splits the kernel: linux-image-<ver> is a stub depending on linux-binary-<ver>.
        const binaryName = pkg.depends.find((dep) => dep.startsWith('linux-binary-'))
        const binary = binaryName ? await showPackage(ctx, apt, binaryName) : undefined
        if (binary) {
          ctx.log(`${pkg.name} holds no vmlinuz; it comes in ${binary.name}`)
          vmlinuz = await findVmlinuz(await downloadAndExtract(ctx, apt, binary, workDir))
        }
      }
      if (!vmlinuz) {
        throw new UserError(`${pkg.name} ${pkg.version} from Debian ${apt.suite} holds no vmlinuz: try another kernel or --kernel-image PATH`)
      }
      const inspection = await inspectBzImage(vmlinuz)
      if (!inspection.ok) {
        throw new UserError(`the vmlinuz in ${pkg.name} ${pkg.version} ${inspection.reason}: try another kernel or --kernel-image PATH`)
      }
      const roots = async () => (await readdir(workDir)).filter((f) => f.endsWith('.root')).map((f) => join(workDir, f))
      let virtio = await findVirtio(await roots())
      // sid splits the rest too: modules.builtin comes in linux-base-<ver> (400 kB), the modules in linux-modules-<ver>.
      for (const prefix of ['linux-base-', 'linux-modules-']) {
        if (virtio && virtio.support.kind !== 'absent') break
        const name = pkg.depends.find((dep) => dep.startsWith(prefix))
        const more = name ? await showPackage(ctx, apt, name) : undefined
        if (!more) continue
        ctx.log(`${pkg.name}'s ${prefix === 'linux-base-' ? 'list of built-in drivers comes' : 'modules come'} in ${more.name}`)
        await downloadAndExtract(ctx, apt, more, workDir)
        virtio = await findVirtio(await roots())
      }
      let support: VirtioSupport = virtio?.support ?? { kind: 'absent', why: 'its packages hold no modules.builtin' }
      let modulesCpio: string | undefined
      if (virtio && support.kind === 'modules') {
        // The modules are a speed-up, not a need: without them (no xz to unpack them) the agent uses the UART.
        modulesCpio = join(workDir, VIRTIO_CPIO)
        await writeModulesCpio(virtio, modulesCpio).catch((err: unknown) => {
          support = { kind: 'absent', why: errorMessage(err) }
          modulesCpio = undefined
        })
      }
      const kernel = await storeKernel(
        ctx.kernelsDir,
        vmlinuz,
        {
          name: ctx.spec,
          release: inspection.release,
          versionString: inspection.versionString,
          source: 'debian',
          suite: apt.suite,
          debianPackage: pkg.name,
          debianVersion: pkg.version,
        },
        support,
        modulesCpio,
      )
      ctx.log(`${kernel.release} ready at ${kernel.path} (virtio-serial: ${support.kind === 'modules' ? `modules ${support.modules.join(', ')}` : support.kind === 'absent' ? `none, ${support.why}: the agent uses the UART` : 'built in'})`)
      return kernel
    },
    { unsafeCleanup: true, prefix: 'oomlab-kernel-' },
  )
}
