/**
 * The QEMU command line of a guest: the machine (accelerator, CPU, memory, kernel, initrd, kernel command
 * line, the console and the agent's channel). A saved state fits only a QEMU started with exactly these
 * arguments, so snapshot keys are built from them; sockets and -incoming are added per run.
 */
import { VIRTIO_CHANNEL_WORD } from '../in-guest/layout.js'

export type Accel = 'kvm' | 'tcg'

/**
 * loglevel=3 keeps the OOM killer's lines, which the evidence has, out of the test output, and panics
 * in it. A disposable guest needs no Spectre mitigations, and under TCG each kernel entry costs more
 * with them. A soft lockup panics at once instead of hanging to the run's deadline, with every CPU's
 * backtrace and, replayed, the whole kernel log (panic_print=0x20), so the report says where it was stuck.
 * printk.devkmsg=on: the harness's own records (markers, barriers) are not rate-limited to 10 per 5 s.
 */
export const BASE_CMDLINE = ['console=ttyS0', 'quiet', 'loglevel=3', 'panic=-1', 'mitigations=off', 'softlockup_panic=1', 'softlockup_all_cpu_backtrace=1', 'panic_print=0x20', 'printk.devkmsg=on']

/**
 * The CPU a TCG guest sees (OOMLAB_TCG_CPU names another model). Without ERMS the guest kernel clears
 * and copies pages with `rep stosq`/`movsq` instead of byte-wise `rep stosb`/`movsb`, which TCG runs
 * an iteration at a time: the hog's 192 MB cost less emulated work. `npm start`, 5 pairs against plain
 * max: wall 0.95x (0.82-0.98), CPU 0.96x.
 */
export const TCG_CPU = process.env.OOMLAB_TCG_CPU || 'max,erms=off'

/**
 * How TCG runs a guest's vCPUs (OOMLAB_TCG_ACCEL names another setting). One vCPU runs on one thread
 * either way. Several share one thread: in a guest of two vCPUs on a thread each, QEMU 7.2 ran V8's code
 * wrongly (a WASM program whose functions V8 compiles on background threads failed 2 of 3 runs, "memory
 * access out of bounds" or a segfault; on one thread 10 of 10 passed), and the guest's agent is node.
 */
export function tcgAccel(cpus: number): string {
  return process.env.OOMLAB_TCG_ACCEL || (cpus > 1 ? 'tcg,thread=single' : 'tcg,thread=multi')
}

export interface MachineSpec {
  qemu: string
  kernel: string
  initrd: string
  accel: 'kvm' | 'tcg'
  memoryMiB: number
  cpus: number
  /** Kernel command-line words after BASE_CMDLINE. */
  append: string[]
  /** The agent's channel: a virtio-serial port where the kernel has the driver (the initrd its modules), else the second UART. */
  channel?: 'serial' | 'virtio'
}

/**
 * The arguments that define the machine: a saved state fits only a QEMU started with exactly these
 * (snapshot keys are built from them). Socket paths and -incoming are added per run.
 */
export function machineArgs(spec: MachineSpec): string[] {
  const accel = spec.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', tcgAccel(spec.cpus), '-cpu', TCG_CPU]
  return [
    ...accel,
    '-smp', String(spec.cpus),
    '-m', String(spec.memoryMiB),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-nic', 'none',
    '-kernel', spec.kernel,
    '-initrd', spec.initrd,
    '-append', [...BASE_CMDLINE, ...spec.append, ...(spec.channel === 'virtio' ? [VIRTIO_CHANNEL_WORD] : [])].join(' '),
    '-serial', 'stdio', // ttyS0: the console
    ...(spec.channel === 'virtio'
      ? ['-device', 'virtio-serial-pci,id=oomlab-vs', '-device', 'virtserialport,bus=oomlab-vs.0,chardev=agent,name=oomlab']
      : ['-serial', 'chardev:agent']), // ttyS1
  ]
}
