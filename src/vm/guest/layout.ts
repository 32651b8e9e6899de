/** Where things are in the guest's file system. */
export const GUEST_PROJECT = '/oomlab'
/** The agent and the experiment specs, compiled on the host (chunks here, so their projectRoot is /oomlab). */
export const GUEST_BUNDLE = '/oomlab/.oomlab/guest'
/** /init runs it with node. */
export const GUEST_AGENT = `${GUEST_BUNDLE}/agent.mjs`
/** The result channel: the second serial port, a file on the host. */
export const GUEST_CHANNEL = '/dev/ttyS1'
/** On the kernel command line: the agent talks over a virtio-serial port instead (vm/virtio.ts). */
export const VIRTIO_CHANNEL_WORD = 'oomlab.channel=virtio'
export const GUEST_USER = { name: 'oomlab', uid: 1000, gid: 1000 }
/** Where /init mounts cgroup2 (init.sh). */
export const GUEST_CGROUP_ROOT = '/sys/fs/cgroup'
/** The article's experiments as a plain shell script: the benchmark's baseline. */
export const GUEST_BASELINE = '/oomlab/experiments/article.sh'

/** The runner guest's fault tests write vitest's JSON results here (src/vm/guest/faults-runner.ts). */
export const FAULTS_RESULTS = '/tmp/oomlab-faults.json'
