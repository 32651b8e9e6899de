/**
 * The lab guest's machine and deadlines, in a room of their own: the runtime image's recipe and the CLI
 * name them without loading the guest client (QEMU, snapshots, the agent's wire), which a spec's worker
 * loads only when its experiment asks for a guest (src/vitest/machine.ts).
 *
 * 512 MiB: the experiments' workload is bounded by their 192M memory.max, and the guest kept at least 104 MB
 * free while spec 02 ran on each of bullseye, bookworm, trixie and sid (its MemFree sampled every 5 ms).
 * More costs every first restore of a run: QEMU's load reads each page of guest RAM, which backs all of it
 * with huge pages, and on a host that hands idle memory back to its hypervisor that is ~2.2 s per GiB.
 */
export const LAB_DEFAULTS = { memoryMiB: 512, cpus: 1, bootTimeoutMs: 60_000, restoreTimeoutMs: 30_000 }
