/** Where things are in the guest's file system. */
export const GUEST_PROJECT = '/oomlab'
/** The guest agent, bundled: /init runs it with node. */
export const GUEST_AGENT = '/oomlab/.oomlab/guest.mjs'
/** The result channel: the second serial port, a file on the host. */
export const GUEST_CHANNEL = '/dev/ttyS1'
export const GUEST_USER = { name: 'oomlab', uid: 1000, gid: 1000 }
