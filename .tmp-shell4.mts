import { execa } from 'execa'
import { buildInitramfs } from '/work/wt-guest/src/vm/image/store.ts'
import { shellGuestTree } from '/work/wt-guest/src/vm/image/recipes.ts'
import { machineArgs } from '/work/wt-guest/src/vm/qemu/command.ts'
import { GuestVm } from '/work/wt-guest/src/vm/vm.ts'
import { prepareLabGuest } from '/work/wt-guest/src/vm/prepare.ts'
import { cacheDir } from '/work/wt-guest/src/util/paths.ts'
const g = await prepareLabGuest({ kernel: 'bookworm', accel: 'auto' }, { log: () => undefined })
const image = await buildInitramfs(cacheDir(), await shellGuestTree(), 'shell')
const spec = { ...g.spec, initrd: image.path, append: [], channel: 'serial' as const }
for (let i = 0; i < 4; i++) {
  // as bootGuest ran it: a plain child, the second UART to a file
  const args = machineArgs(spec).map((a) => (a === 'chardev:agent' ? 'file:/tmp/wtguest-ttyS1' : a))
  const runPlain = async () => { const t0 = performance.now(); await execa('qemu-system-x86_64', args, { stdin: 'pipe', reject: false }); return (performance.now() - t0) / 1000 }
  const runSetsid = async () => { const t0 = performance.now(); await execa('setsid', ['qemu-system-x86_64', ...args], { stdin: 'pipe', reject: false }); return (performance.now() - t0) / 1000 }
  const runVm = async () => { const t0 = performance.now(); const vm = await GuestVm.boot(spec, { connectTimeoutMs: 60000 }); await vm.exited; const s = (performance.now() - t0) / 1000; await vm.dispose(); return s }
  let plain = 0, viaVm = 0, sid = 0
  if (i % 2) { viaVm = await runVm(); sid = await runSetsid(); plain = await runPlain() } else { plain = await runPlain(); sid = await runSetsid(); viaVm = await runVm() }
  console.log(`plain child ${plain.toFixed(2)} s; setsid ${sid.toFixed(2)} s; GuestVm.boot ${viaVm.toFixed(2)} s; load ${(await import('node:os')).loadavg()[0]}`)
}
