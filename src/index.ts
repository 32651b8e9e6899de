/**
 * oom-group-lab as a package: the fixtures the article's specs use, for experiments of one's own.
 *
 *   import { experiment, expect } from 'oom-group-lab'
 *   experiment('my layout', async ({ lab }) => { ... })
 *
 * Run them with `npx oomlab reproduce ./my-layout.spec.ts` (report and evidence in ./reports/latest), or
 * with plain `npx vitest` (evidence in ./reports/vitest/evidence; natively, or in a restored guest).
 * Containers of real runtimes come with the `runtime` fixture; in a guest, the spec's first comment asks
 * for their image: `@oomlab-image runtimes`.
 */
export { experiment, expect } from './experiment/fixtures.js'
export { Lab, Cgroup, Shell, ROOT, type CgroupSettings, type Member, type Fate, type Role, type Credentials } from './experiment/lab.js'
export type { Os, OsFacts } from './os/os.js'
export type { OomEvent } from './kmsg/oom.js'
export type { MemoryEvents } from './cgroup/memory-events.js'
export { Runtime, Container, FORKING_SERVER, IDLE_SERVER, OCI_RUNTIMES, kubeletUnified, type Workload, type OciRuntimeName } from './experiment/runtime.js'
