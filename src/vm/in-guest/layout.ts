/** Where things are in the guest's file system: shared by the code that runs there and the host that builds it. */
export const GUEST_PROJECT = '/oomlab'
/** Code bundled on the host for the guest (src/vm/image/bundle.ts); /init runs the agent from here. */
export const GUEST_BUNDLE = '/oomlab/.oomlab/guest'
/** The agent's channel on the second UART (a socket of QEMU's on the host). */
export const GUEST_CHANNEL = '/dev/ttyS1'
/** On the kernel command line: the agent talks over a virtio-serial port instead (kernel/virtio.ts). */
export const VIRTIO_CHANNEL_WORD = 'oomlab.channel=virtio'
export const GUEST_USER = { name: 'oomlab', uid: 1000, gid: 1000 }
/** Where /init mounts cgroup2 (init.sh). */
export const GUEST_CGROUP_ROOT = '/sys/fs/cgroup'
/** The article's experiments as a plain shell script: the benchmark's baseline. */
export const GUEST_BASELINE = '/oomlab/experiments/article.sh'
