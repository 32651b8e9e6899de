/**
 * An OCI bundle's config.json from typed options, as a kubelet's request reaches runc or crun: the
 * command, the user, the cgroup path (the cgroupfs driver's), the memory limit with swap kept at 0, and
 * `linux.resources.unified`, the map through which Kubernetes 1.28+ asks for memory.oom.group=1. The
 * rootfs is a folder of read-only bind mounts of the machine's own /usr, /bin, /etc (the guest image's
 * programs). Pure: the bundle's folder is made by bundle.ts.
 */
import type { Credentials } from '../proc/spawn.js'

export type OciRuntimeName = 'runc' | 'crun'
export const OCI_RUNTIMES: readonly OciRuntimeName[] = ['runc', 'crun']

export interface OciContainerSpec {
  /** The container's id in its runtime's root, and its hostname. */
  id: string
  /** Its PID 1's argv. */
  args: string[]
  user: Credentials
  /** The cgroup the runtime creates, from the cgroup2 mount's root (the cgroupfs driver's cgroupsPath). */
  cgroupsPath: string
  /** linux.resources.memory.limit in bytes; swap set equal, so memory.swap.max is 0 (a kubelet without swap). */
  memoryLimit?: number
  /** linux.resources.unified: cgroup v2 files the runtime writes as given. */
  unified?: Record<string, string>
  /** Files of the machine bound into the container, by the path it sees them at (a FIFO it waits on). */
  files?: Record<string, string>
}

/** Top-level folders of the machine's / that the rootfs binds read-only; the others it links as the machine does. */
export interface RootfsLayout {
  binds: string[]
}

/** The folders of / a container's programs live in (the guest's busybox, node's libraries, stress-ng). */
export const ROOTFS_FROM_MACHINE = ['bin', 'sbin', 'usr', 'lib', 'lib32', 'lib64', 'libx32', 'etc']

export function ociConfig(spec: OciContainerSpec, rootfs: RootfsLayout): object {
  const resources: Record<string, unknown> = {}
  if (spec.memoryLimit !== undefined) resources.memory = { limit: spec.memoryLimit, swap: spec.memoryLimit }
  if (spec.unified !== undefined) resources.unified = spec.unified
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: spec.user.uid, gid: spec.user.gid },
      args: spec.args,
      env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/tmp', 'LANG=C'],
      // stress-ng needs a working directory its user can write (/tmp below is 1777).
      cwd: '/tmp',
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: spec.id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      // runc gives a tmpfs the mode of the folder it covers, whatever mode= says: the rootfs's /tmp is 1777 too (bundle.ts).
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
      ...rootfs.binds.map((d) => ({ destination: `/${d}`, type: 'bind', source: `/${d}`, options: ['rbind', 'ro'] })),
      ...Object.entries(spec.files ?? {}).map(([destination, source]) => ({ destination, type: 'bind', source, options: ['bind'] })),
    ],
    linux: {
      cgroupsPath: spec.cgroupsPath,
      resources,
      // A container of its own PID namespace, as in a pod without shareProcessNamespace; the pod's network.
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }],
    },
  }
}

/** What `runc state` / `crun state` print. */
export interface OciState {
  id: string
  /** creating, created, running, stopped. */
  status: string
  /** The container's PID 1 on the machine; 0 once stopped. */
  pid: number
  bundle?: string
  created?: string
}

export function parseOciState(text: string): OciState {
  const v = JSON.parse(text) as Partial<OciState>
  if (typeof v.id !== 'string' || typeof v.status !== 'string' || typeof v.pid !== 'number') throw new Error(`not a runtime's state: ${text.slice(0, 200)}`)
  return { id: v.id, status: v.status, pid: v.pid, ...(v.bundle !== undefined && { bundle: v.bundle }), ...(v.created !== undefined && { created: v.created }) }
}
