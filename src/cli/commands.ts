/** oomlab's subcommands: what each does, its flags, the variables it reads and its exit codes, for parsing and --help. */
import type { CommandDef, FlagDef } from './flags.js'

/** Every variable a user sets, with its meaning (README's table says the same). */
export const USER_ENV: Record<string, string> = {
  OOMLAB_VM: '1: always run in guests (as --vm)',
  OOMLAB_CGROUP_PARENT: 'native runs: a delegated cgroup for the run\'s trees (as --cgroup-root)',
  OOMLAB_KERNEL: 'guest runs: a Debian suite or version (as --kernel)',
  OOMLAB_KERNEL_IMAGE: 'guest runs: a bzImage of your own (as --kernel-image)',
  OOMLAB_KERNEL_SRC: 'guest runs: a Linux source tree or tarball to build and boot (as --kernel-src)',
  OOMLAB_ACCEL: 'auto, kvm or tcg (as --accel)',
  OOMLAB_MEMORY: 'guest memory in MiB, 512 or more (as --memory)',
  OOMLAB_APPEND: 'extra guest kernel command line (as --append)',
  OOMLAB_JOBS: 'experiments at once (as --jobs; default: one per core)',
  OOMLAB_REPORT_DIR: 'the report folder (as --report)',
  OOMLAB_UID: 'the workload\'s uid (default 1000; never 0)',
  OOMLAB_GID: 'the workload\'s gid (default: the uid)',
  OOMLAB_TIMEOUT_SCALE: 'multiplies every deadline (a slow machine: 2)',
  OOMLAB_CACHE_DIR: 'kernels, images and snapshots (default ~/.cache/oom-group-lab)',
  OOMLAB_CACHE_LIMIT: 'the cache\'s bound, e.g. 4G (0: none)',
  OOMLAB_DEBIAN_MIRROR: 'another Debian mirror for kernels',
  OOMLAB_CHANNEL: 'serial: the agent on the second UART instead of virtio-serial',
  OOMLAB_RESTORE_AHEAD: '1 or 0: the first guests restored while vitest starts (default: where the host has cores to spare for them)',
  OOMLAB_DEBUG: '1: stack traces with errors',
}

const pick = (...names: string[]) => Object.fromEntries(names.map((n) => [n, USER_ENV[n]!]))

const GUEST_FLAGS: Record<string, FlagDef> = {
  accel: { type: 'string', arg: 'auto|kvm|tcg', help: 'default auto: KVM only if a probe guest really boots with it' },
  memory: { type: 'string', arg: 'MiB', help: 'guest memory (default 512)' },
  cpus: { type: 'string', arg: 'N', help: 'vCPUs per guest (default 1; under TCG, several share one host thread)' },
  append: { type: 'string', arg: '"ARGS"', help: 'extra guest kernel command line' },
  'boot-timeout': { type: 'string', arg: 'SEC', help: 'deadline for a guest to boot when its snapshot is made (default 60)' },
  refresh: { type: 'boolean', help: "ask Debian's mirror again for the newest kernel of a suite" },
}

const RUN_FLAGS: Record<string, FlagDef> = {
  vm: { type: 'boolean', help: 'always run in guests (also OOMLAB_VM=1)' },
  native: { type: 'boolean', help: 'never use guests; fail if this host cannot run the experiments' },
  kernel: { type: 'string', arg: 'NAME', help: 'Debian suite (bullseye, bookworm, bookworm-backports, trixie, sid) or version (6.1.0-50); default bookworm; NAME+memory_localevents mounts cgroup2 with that option' },
  'kernel-image': { type: 'string', arg: 'PATH', help: 'boot your own bzImage instead' },
  'kernel-src': { type: 'string', arg: 'DIR', help: 'build a kernel from this Linux source tree (or its .tar.xz) and boot it (cached; see oomlab kernel --help)' },
  ...GUEST_FLAGS,
  jobs: { type: 'string', arg: 'N', help: 'experiments at once (default: one per core; natively always one)' },
  timeout: { type: 'string', arg: 'SEC', help: 'deadline for the whole run of the experiments (default: none; each test has its own)' },
  report: { type: 'string', arg: 'DIR', help: 'the report folder (default: a new reports/runs/<id>, and reports/latest points at it)' },
  'cgroup-root': { type: 'string', arg: 'PATH', help: "native runs: create the run's cgroups below this delegated cgroup only" },
}

const RUN_ENV_VARS = pick('OOMLAB_VM', 'OOMLAB_CGROUP_PARENT', 'OOMLAB_KERNEL', 'OOMLAB_KERNEL_IMAGE', 'OOMLAB_KERNEL_SRC', 'OOMLAB_ACCEL', 'OOMLAB_MEMORY', 'OOMLAB_APPEND', 'OOMLAB_JOBS', 'OOMLAB_REPORT_DIR', 'OOMLAB_UID', 'OOMLAB_GID', 'OOMLAB_TIMEOUT_SCALE', 'OOMLAB_CACHE_DIR', 'OOMLAB_CACHE_LIMIT', 'OOMLAB_DEBIAN_MIRROR', 'OOMLAB_CHANNEL', 'OOMLAB_RESTORE_AHEAD', 'OOMLAB_DEBUG')

const RUN_EXITS = {
  3: 'nothing failed, but the kernel could not run some scenario ("unsupported: <reason>")',
  125: 'with --kernel-src: the tree did not build, or its kernel did not boot (git bisect run: skip this commit)',
}

export const COMMANDS: Record<string, CommandDef> = {
  reproduce: {
    name: 'reproduce',
    summary: "Runs the article's experiments (natively if this host can, else in QEMU guests) and prints who the kernel killed and who survived.",
    positionals: '[SPEC-FILTER... | ./my-layout.spec.ts...]',
    flags: RUN_FLAGS,
    env: RUN_ENV_VARS,
    exits: RUN_EXITS,
    more: 'A filter is part of a spec\'s file name (02-leaf); a path names a spec of your own. Selecting none is exit 2.\nTo find the commit that broke a group kill: git bisect run npx oomlab reproduce --kernel-src . 02-',
  },
  test: {
    name: 'test',
    summary: 'The unit tests (in the repository), then the experiments as `reproduce` runs them; non-zero on any failure.',
    positionals: '[SPEC-FILTER... | ./my-layout.spec.ts...]',
    flags: RUN_FLAGS,
    env: RUN_ENV_VARS,
    exits: RUN_EXITS,
  },
  matrix: {
    name: 'matrix',
    summary: 'Every experiment on each kernel, in guests, with one report (default kernels: bullseye bookworm bookworm+memory_localevents trixie sid).',
    positionals: '[KERNEL... | ./my-layout.spec.ts...]',
    flags: {
      'kernel-image': { type: 'string', multiple: true, arg: 'PATH', help: 'a bzImage of your own as one more kernel' },
      'kernel-src': { type: 'string', multiple: true, arg: 'DIR', help: 'a Linux source tree (or its .tar.xz) to build, as one more kernel' },
      spec: { type: 'string', multiple: true, arg: 'FILTER', help: 'only the specs whose file name holds FILTER' },
      ...GUEST_FLAGS,
      jobs: { type: 'string', arg: 'N', help: 'guests at once (default: one per core)' },
      timeout: RUN_FLAGS.timeout!,
      report: RUN_FLAGS.report!,
    },
    env: pick('OOMLAB_JOBS', 'OOMLAB_REPORT_DIR', 'OOMLAB_TIMEOUT_SCALE', 'OOMLAB_CACHE_DIR', 'OOMLAB_CACHE_LIMIT', 'OOMLAB_DEBIAN_MIRROR', 'OOMLAB_CHANNEL', 'OOMLAB_DEBUG'),
    exits: { 3: 'nothing failed, but some scenario is unsupported on some kernel' },
    more:
      'A KERNEL is a Debian suite or version, or a cell KERNEL+OPTION: that kernel with cgroup2 mounted with OPTION\n' +
      '(memory_localevents, memory_recursiveprot, ...), e.g. bookworm+memory_localevents.\n' +
      'The report says per kernel which capabilities it has and which its upstream version must have.',
  },
  kernel: {
    name: 'kernel',
    summary: 'Builds a kernel from a Linux source tree (or its tarball) for the guests: `oomlab kernel build DIR`; prints the bzImage\'s path.',
    positionals: 'build DIR|TARBALL',
    flags: { jobs: { type: 'string', arg: 'N', help: "make's -j (default: one per core)" } },
    env: pick('OOMLAB_CACHE_DIR', 'OOMLAB_DEBUG'),
    exits: { 1: 'the tree did not configure or build (the log\'s path and last lines are printed)' },
    more:
      'Out of tree: the build folder is in the cache, nothing is written into DIR (a tree configured in place\n' +
      'must be cleaned with `make mrproper` first). Configured from DIR\'s x86_64_defconfig with the project\'s\n' +
      'fragment src/kernel/build/guest.config merged over it, then `make bzImage`. Cached by the tree (git: HEAD\'s\n' +
      'tree and the uncommitted changes; else its version and what changed since it was unpacked or first built),\n' +
      'the fragment and the compiler: an unchanged tree is reused at once, a changed one rebuilt incrementally.\n' +
      'A tarball (/usr/src/linux-source-6.1.tar.xz) is unpacked into the cache once. Needs gcc, make, flex, bison,\n' +
      'bc and the libelf and libssl headers.',
  },
  doctor: {
    name: 'doctor',
    summary: 'Checks what each way of running needs (natively: cgroup v2 with memory, root, the tools; in guests: QEMU, busybox, zstd, KVM or TCG) and says which way `npm test` will take.',
    flags: {},
    env: pick('OOMLAB_VM', 'OOMLAB_CGROUP_PARENT'),
    exits: { 1: 'neither way can run here' },
  },
  bench: {
    name: 'bench',
    summary: 'Times the harness against the article\'s steps as a plain shell script, kill detection, snapshots and the matrix; checks the targets.',
    flags: {
      runs: { type: 'string', arg: 'N', help: 'runs of each measurement (default 3)' },
      kernel: { type: 'string', arg: 'NAME', help: 'the kernel to measure on (default bookworm)' },
      accel: GUEST_FLAGS.accel!,
      'skip-matrix': { type: 'boolean', help: 'leave the matrix out' },
    },
    env: pick('OOMLAB_CACHE_DIR', 'OOMLAB_DEBUG'),
    exits: { 1: 'a measurement failed or a target was missed' },
  },
  soak: {
    name: 'soak',
    summary: 'Fault tests, guest boots, then the specs in restored guests until N runs in a row pass on each kernel.',
    flags: {
      runs: { type: 'string', arg: 'N', help: 'spec runs in a row on the first kernel (default 200)' },
      others: { type: 'string', arg: 'N', help: 'spec runs in a row on the other kernels (default 50)' },
      boots: { type: 'string', arg: 'N', help: 'snapshot boots (default 100)' },
      'boot-cpus': { type: 'string', arg: 'N', help: 'vCPUs of the boots (default 1)' },
      kernel: { type: 'string', arg: 'NAME', help: 'the first kernel (default bookworm)' },
      kernels: { type: 'string', arg: 'A,B,...', help: 'the other kernels' },
      'skip-faults': { type: 'boolean', help: 'leave the fault tests out' },
    },
    env: pick('OOMLAB_CACHE_DIR', 'OOMLAB_DEBUG'),
  },
  kernels: {
    name: 'kernels',
    summary: 'Lists the kernels you can name and the ones in the cache.',
    flags: {},
    env: pick('OOMLAB_CACHE_DIR'),
  },
  cache: {
    name: 'cache',
    summary: 'What the cache holds (sizes, ages, what is stale). `cache prune` removes the stale; `cache key --kernel NAME` prints kernel=<release> (CI\'s cache key: asks the mirror, downloads nothing).',
    positionals: '[prune | key]',
    flags: { kernel: { type: 'string', arg: 'NAME', help: 'with `key`: the kernel whose release to print' } },
    env: pick('OOMLAB_CACHE_DIR', 'OOMLAB_CACHE_LIMIT', 'OOMLAB_DEBIAN_MIRROR'),
  },
}

export function generalHelp(version: string): string {
  const w = Math.max(...Object.keys(COMMANDS).map((c) => c.length))
  return [
    `oomlab ${version}: reproduces, on real kernels, what memory.oom.group does to a cgroup's processes`,
    '',
    'usage: oomlab <command> [options]        oomlab <command> --help        oomlab --version',
    '',
    'commands:',
    ...Object.values(COMMANDS).map((c) => `  ${c.name.padEnd(w)}  ${c.summary.split(/(?<=\.)\s/)[0]}`),
    '',
    'exit codes: 0 success; 1 something failed; 2 bad command line or setting; 3 some scenario unsupported on the kernel; 130 interrupted',
    'variables: see `oomlab reproduce --help`',
  ].join('\n')
}
