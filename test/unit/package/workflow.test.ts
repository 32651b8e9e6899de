// The CI workflow users copy: GitHub's schema accepts it (checked by @action-validator/cli, a maintained
// validator), and each job does what the README says it does (our own checks below).
import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execa } from 'execa'
import { withDir } from 'tmp-promise'
import { parse } from 'yaml'
import { MATRIX_DEFAULT } from '../../../src/cli/args.js'
import { packageRoot } from '../../../src/util/paths.js'

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

const workflowFile = fileURLToPath(new URL('../../../.github/workflows/oomlab.yml', import.meta.url))
const workflowText = readFileSync(workflowFile, 'utf8')
const wf = parse(workflowText, { strict: true, uniqueKeys: true }) as {
  jobs: Record<string, Job>
}
const runs = (job: string) => wf.jobs[job]!.steps.map((s) => s.run ?? '').join('\n')

/** action-validator's verdict on a workflow file: exit 0 when the schema accepts it, else 1 with its errors as JSON. */
const validate = (file: string) => execa('action-validator', [file], { preferLocal: true, localDir: packageRoot, reject: false, all: true })

describe('.github/workflows/oomlab.yml', () => {
  it('is a workflow GitHub accepts: @action-validator/cli finds nothing wrong', async () => {
    const r = await validate(workflowFile)
    expect(r.exitCode, r.all).toBe(0)
  })

  it('is checked for real: the validator rejects a copy with a misspelt trigger (which our own checks do not read), naming it', async () => {
    await withDir(
      async ({ path }) => {
        const bad = join(path, 'oomlab.yml')
        const broken = workflowText.replace('\n  push:\n', '\n  pushh:\n')
        expect(broken).not.toBe(workflowText)
        await writeFile(bad, broken)
        const r = await validate(bad)
        expect(r.exitCode).toBe(1)
        expect(r.all).toContain("Additional property 'pushh' is not allowed")
      },
      { prefix: 'oomlab-workflow-', unsafeCleanup: true },
    )
  })

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
