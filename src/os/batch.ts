/**
 * A typed batch of file operations: each is added by what it does and answered by name, so a step
 * that needs many files still makes one round trip (Os.run) without counting indexes.
 */
import { valueOf, type Op, type OpResult, type Os, type ProcInfo } from './os.js'

/** One operation of a batch, answered once the batch has run. */
export interface Slot<T> {
  readonly op: Op
  /** Its result as the machine gave it (ok, or the error and its code). */
  result(): OpResult
  /** Its value; an OsError naming the operation when it failed. */
  value(): T
  /** Its value, or undefined when it failed. */
  valueOrUndefined(): T | undefined
}

export class OpBatch {
  private readonly ops: Op[] = []
  private results: OpResult[] | undefined

  private add<T>(op: Op): Slot<T> {
    const i = this.ops.push(op) - 1
    const result = (): OpResult => {
      if (!this.results) throw new Error(`${op.op}: the batch has not run yet`)
      return this.results[i] ?? { ok: false, error: 'no answer' }
    }
    return {
      op,
      result,
      value: () => valueOf(op, result()) as T,
      valueOrUndefined: () => {
        const r = result()
        return r.ok ? (r.value as T) : undefined
      },
    }
  }

  read(path: string): Slot<string> {
    return this.add({ op: 'read', path })
  }
  write(path: string, data: string): Slot<undefined> {
    return this.add({ op: 'write', path, data })
  }
  exists(path: string): Slot<boolean> {
    return this.add({ op: 'exists', path })
  }
  mkdir(path: string): Slot<undefined> {
    return this.add({ op: 'mkdir', path })
  }
  /** Removes an empty folder; one already gone is success. */
  rmdir(path: string): Slot<undefined> {
    return this.add({ op: 'rmdir', path })
  }
  /** What /proc says of a process; null once it is gone. */
  proc(pid: number): Slot<ProcInfo | null> {
    return this.add({ op: 'proc', pid })
  }
  /** What /proc says of each process in a cgroup's cgroup.procs. */
  procs(cgroupDir: string): Slot<ProcInfo[]> {
    return this.add({ op: 'procs', path: cgroupDir })
  }

  /** Runs every operation in one round trip; each slot then has its answer. */
  async run(os: Os): Promise<void> {
    this.results = await os.run(this.ops)
  }
}
