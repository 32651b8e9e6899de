// Entry of the guest agent, bundled on the host into one file so the guest starts it without a
// TypeScript loader (under TCG every module loaded costs about 15 times what it does natively).
import { guestMain } from './agent.js'

await guestMain()
