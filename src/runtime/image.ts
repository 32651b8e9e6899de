/**
 * The guest image of the container runtime specs: the lab guest plus runc, crun, conmon and LXC from
 * Debian 12's packages (fetched with the private apt and unpacked into the cache: installing `lxc` on a
 * host would enable its lxc-net service), with the libraries they load. A second image, so the article's
 * specs keep the lab image and its restore time.
 */
import type { ImageAddition } from '../vm/image/recipes.js'
import { LAB_DEFAULTS } from '../vm/lab-defaults.js'

/** What a spec names in its first comment (`@oomlab-image runtimes`) to run in this image. */
export const RUNTIMES = 'runtimes'

export const RUNTIMES_IMAGE: ImageAddition = {
  name: RUNTIMES,
  debian: {
    suite: 'bookworm',
    packages: ['runc', 'crun', 'conmon', 'lxc', 'liblxc1', 'liblxc-common'],
    programs: ['/usr/sbin/runc', '/usr/bin/crun', '/usr/bin/conmon', '/usr/bin/lxc-execute', '/usr/bin/lxc-info', '/usr/bin/lxc-stop', '/usr/bin/lxc-ls', '/usr/sbin/init.lxc'],
    files: ['/usr/sbin/init.lxc.static'],
    dirs: ['/var/lib/lxc', '/run/lxc', '/usr/lib/x86_64-linux-gnu/lxc/rootfs'],
  },
  machine: { memoryMiB: LAB_DEFAULTS.memoryMiB, cpus: LAB_DEFAULTS.cpus },
}
