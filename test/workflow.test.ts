// The CI workflow users copy: it must parse, and each job must do what the README says it does.
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { MATRIX_DEFAULT } from '../src/cli/args.js'

interface Step {
  run?: string
  shell?: string
  if?: string
  uses?: string
  with?: Record<string, unknown>
}
interface Job {
  'runs-on': string
  steps: Step[]
  strategy?: { matrix: { kernel: string[] } }
}

const wf = parse(readFileSync(new URL('../.github/workflows/oomlab.yml', import.meta.url), 'utf8'), { strict: true, uniqueKeys: true }) as {
  jobs: Record<string, Job>
}
const runs = (job: string) => wf.jobs[job]!.steps.map((s) => s.run ?? '').join('\n')

describe('.github/workflows/oomlab.yml', () => {
  it('has the unit, native and matrix jobs, each on a runner with steps', () => {
    expect(Object.keys(wf.jobs)).toEqual(['unit', 'native', 'matrix'])
    for (const job of Object.values(wf.jobs)) {
      expect(job['runs-on']).toMatch(/^ubuntu-/)
      expect(job.steps[0]?.uses).toMatch(/^actions\/checkout@v\d+$/)
    }
  })

  it('runs the experiments natively, never in a VM, in the native job', () => {
    expect(runs('native')).toMatch(/npm run reproduce -- --native/)
  })

  it('runs every oomlab command that needs root with sudo, and changes nothing on the runner', () => {
    const lines = Object.keys(wf.jobs).flatMap((j) => runs(j).split('\n'))
    const oomlab = lines.filter((l) => /npm run (doctor|reproduce|matrix)|npm test/.test(l))
    expect(oomlab.length).toBeGreaterThanOrEqual(3)
    for (const l of oomlab) expect(l).toMatch(/^sudo --preserve-env=PATH[\w,]* npm /)
    expect(lines.filter((l) => /swapoff|cgroup\.subtree_control|\/sys\/fs\/cgroup/.test(l))).toEqual([])
  })

  it('spreads the default kernel matrix over one job per kernel and uploads each report', () => {
    expect(wf.jobs.matrix!.strategy!.matrix.kernel).toEqual(MATRIX_DEFAULT)
    expect(runs('matrix')).toContain('npm run matrix -- ${{ matrix.kernel }}')
    const upload = wf.jobs.matrix!.steps.find((s) => s.uses?.startsWith('actions/upload-artifact'))
    expect(upload?.with?.path).toBe('reports/${{ matrix.kernel }}')
  })

  it('caches the kernel by its release, the image by its inputs, snapshots only under emulation and keyed by CPU model', () => {
    const caches = wf.jobs.matrix!.steps.filter((s) => s.uses?.startsWith('actions/cache'))
    const keyOf = (path: string) => caches.find((s) => s.with?.path === path)?.with?.key
    expect(keyOf('.oomlab-cache/kernels')).toBe('oomlab-kernel-${{ steps.keys.outputs.kernel }}')
    expect(keyOf('.oomlab-cache/initramfs')).toContain("hashFiles('package-lock.json', 'src/**', 'experiments/**')")
    expect(keyOf('.oomlab-cache/initramfs')).toContain('${{ steps.keys.outputs.host }}')
    // The runner's own variables are not in the env context: a key must not lean on them.
    for (const c of caches) expect(String(c.with?.key)).not.toMatch(/env\.Image/)
    expect(keyOf('.oomlab-cache/snapshots')).toContain('${{ steps.keys.outputs.cpu }}')
    expect(caches.find((s) => s.with?.path === '.oomlab-cache/snapshots')?.if).toBe("steps.keys.outputs.accel == 'tcg'")
    // Its apt lists go to a temp folder: root-owned files in the cached folder would break the restore.
    expect(runs('matrix')).toContain('OOMLAB_CACHE_DIR="$RUNNER_TEMP/oomlab-key" npm run --silent cache -- key --kernel ${{ matrix.kernel }} >> "$GITHUB_OUTPUT"')
  })

  it('fails the matrix step when the run fails, though its output goes through tee, and says which accelerator it used', () => {
    const step = wf.jobs.matrix!.steps.find((s) => s.run?.includes('npm run matrix'))!
    expect(step.run).toContain('| tee matrix.log')
    expect(step.shell).toBe('bash') // GitHub's bash shell runs with -o pipefail; its default does not
    expect(runs('matrix')).toMatch(/GITHUB_STEP_SUMMARY/)
  })
})
