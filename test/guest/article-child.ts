/**
 * The article's scenario 2 as a program of its own, without vitest, for the fault tests in the guest:
 * it says where it is ("tree", "phase ..."), so a test can interrupt it at a chosen moment, and ends
 * with what it saw ("result {...}"), so two running at once can be compared.
 */
import { Lab } from '../../src/experiment/lab.js'
import { LocalOs } from '../../src/os/local.js'

const say = (what: string) => process.stdout.write(`${what}\n`)
const os = new LocalOs()
const lab = await Lab.open('article scenario 2, interruptible', { os })
say(`tree ${lab.root.dir}`)
try {
  say('phase setup')
  await lab.cgroup('test01')
  const test011 = await lab.cgroup('test01/test011', { 'memory.max': '192M', 'memory.oom.group': 1 })
  const shell = await lab.shell(test011)
  await lab.nohupSleep(test011)
  say('phase pushing')
  await shell.runStressNg()
  await lab.waitForGroupKill(test011)
  await test011.waitUntilEmpty()
  await lab.waitForKillRecords()
  const events = lab.oomEvents().map((e) => ({ oomMemcg: e.oomMemcg, groupKill: e.groupKill, killed: e.killed.map((k) => k.pid) }))
  say(`result ${JSON.stringify({ root: lab.root.kernelPath, members: lab.members.map((m) => m.pid), events })}`)
} finally {
  say('phase teardown')
  await lab.dispose()
  await os.dispose()
}
say('done')
