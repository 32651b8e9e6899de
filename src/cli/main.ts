const cmd = process.argv[2]
if (cmd === 'guest') {
  const { guestMain } = await import('../vm/guest/agent.js')
  await guestMain()
}
