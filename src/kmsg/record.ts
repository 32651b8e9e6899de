/** /dev/kmsg records (Documentation/ABI/testing/dev-kmsg): "prio,seq,usec,flags[,..];message" + " KEY=value" lines. */

export interface KmsgRecord {
  seq: number
  /** Microseconds since boot (the kernel's timestamp). */
  usec: number
  level: number
  message: string
}

/** Parses one record as read(2) returns it; undefined for text that is not a record. */
export function parseRecord(raw: string): KmsgRecord | undefined {
  const semi = raw.indexOf(';')
  if (semi < 0) return undefined
  const [prio, seq, usec] = raw.slice(0, semi).split(',')
  if (seq === undefined || usec === undefined || !/^\d+$/.test(seq)) return undefined
  const message = raw.slice(semi + 1).split('\n')[0] ?? ''
  return { seq: Number(seq), usec: Number(usec), level: Number(prio) & 7, message }
}

/**
 * Splits a byte stream of concatenated records (as `cat /dev/kmsg` prints them) into records.
 * Continuation lines (" SUBSYSTEM=...") belong to the record before them.
 */
export class RecordSplitter {
  private partial = ''
  push(chunk: string): KmsgRecord[] {
    this.partial += chunk
    const lines = this.partial.split('\n')
    this.partial = lines.pop() ?? ''
    const out: KmsgRecord[] = []
    for (const line of lines) {
      if (line.startsWith(' ')) continue
      const rec = parseRecord(line)
      if (rec) out.push(rec)
    }
    return out
  }
}

/** Formats a record like dmesg does: "[   12.345678] message". */
export function formatRecord(r: KmsgRecord): string {
  const s = (r.usec / 1e6).toFixed(6).padStart(12)
  return `[${s}] ${r.message}`
}
