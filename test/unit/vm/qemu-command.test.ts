// The guest's QEMU command line: how TCG runs its vCPUs.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { machineArgs, type MachineSpec } from '../../../src/vm/qemu/command.js'

const spec: MachineSpec = { qemu: 'qemu-system-x86_64', kernel: '/k/vmlinuz', initrd: '/k/initrd', accel: 'tcg', memoryMiB: 512, cpus: 1, append: [] }
const accelOf = (s: MachineSpec) => {
  const args = machineArgs(s)
  return args[args.indexOf('-accel') + 1]
}

describe('machineArgs', () => {
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  it('runs one vCPU on a thread of its own, and several on one thread (V8 ran wrongly in a guest of two vCPUs on two)', () => {
    expect(accelOf(spec)).toBe('tcg,thread=multi')
    expect(accelOf({ ...spec, cpus: 2 })).toBe('tcg,thread=single')
    expect(machineArgs({ ...spec, cpus: 2 })).toEqual(expect.arrayContaining(['-smp', '2']))
  })

  it('takes OOMLAB_TCG_ACCEL as given, and leaves KVM alone', () => {
    vi.stubEnv('OOMLAB_TCG_ACCEL', 'tcg,thread=multi')
    expect(accelOf({ ...spec, cpus: 4 })).toBe('tcg,thread=multi')
    expect(machineArgs({ ...spec, accel: 'kvm', cpus: 2 }).slice(0, 4)).toEqual(['-accel', 'kvm', '-cpu', 'host'])
  })
})
