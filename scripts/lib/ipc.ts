/**
 * The message channel between a benchmark and the client processes it forks. A client
 * runs in its own process so that what the benchmark measures (RSS, event loop, CPU) is
 * the server's alone. Every client ends with one `result` or `error` message.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** A message: anything with a `type` to dispatch on. */
export interface Message { type: string }

/** The last message a client sends. */
type ChildEnd<R> = { type: 'result', result: R } | { type: 'error', message: string }

/** The client's side of the channel. */
export interface ChildIo<In extends Message, Out extends Message> {
  send: (m: Out) => void
  /** The oldest message of this type not taken yet, now or when it arrives. */
  next: <T extends In['type']>(type: T) => Promise<Extract<In, { type: T }>>
  /** Calls `fn` for every message, those that came before included. */
  on: (fn: (m: In) => void) => void
}

/**
 * Runs a client process: `main` gets the channel, and what it returns (or throws) is
 * sent as the last message. Messages are kept, because messages read in one chunk are
 * emitted back to back before any promise continuation runs: one that arrives before its
 * listener must still be seen.
 */
export async function runChild<In extends Message, Out extends Message, R> (main: (io: ChildIo<In, Out>) => Promise<R>): Promise<void> {
  const received: In[] = []
  const consumed = new Set<number>()
  const waiting = new Map<string, () => void>()
  const listeners: Array<(m: In) => void> = []
  process.on('message', (m: In) => {
    received.push(m)
    for (const l of listeners) l(m)
    const w = waiting.get(m.type)
    if (w) {
      waiting.delete(m.type)
      w()
    }
  })
  const take = (type: string): In | undefined => {
    const i = received.findIndex((m, j) => m.type === type && !consumed.has(j))
    if (i === -1) return undefined
    consumed.add(i)
    return received[i]
  }
  const send = (m: Out | ChildEnd<R>): void => { process.send?.(m) }
  const io: ChildIo<In, Out> = {
    send,
    next: <T extends In['type']>(type: T) => new Promise<Extract<In, { type: T }>>((resolve) => {
      const now = take(type)
      if (now) return resolve(now as Extract<In, { type: T }>)
      waiting.set(type, () => resolve(take(type) as Extract<In, { type: T }>))
    }),
    on: (fn) => {
      for (const m of received) fn(m)
      listeners.push(fn)
    },
  }
  try {
    send({ type: 'result', result: await main(io) })
  } catch (err) {
    send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  }
  process.disconnect?.()
}

/** The benchmark's side of the channel to one client. */
export interface ForkedChild<In extends Message, Out extends Message, R> {
  /** Sends a message while the client is still connected. */
  send: (m: In) => void
  /** Calls `fn` for every message but the last. */
  on: (fn: (m: Out) => void) => void
  /** The client's result; rejects on its error message or when it exits without one. */
  result: Promise<R>
  /** Stops the client if it is still running. */
  kill: () => void
}

/** Forks `file` (a module that calls `runChild`) with this process's loader flags (tsx). */
export function forkChild<In extends Message, Out extends Message, R> (file: URL, name: string): ForkedChild<In, Out, R> {
  const child: ChildProcess = fork(fileURLToPath(file), [], {
    execArgv: process.execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const result = new Promise<R>((resolve, reject) => {
    child.on('message', (m: Out | ChildEnd<R>) => {
      if (m.type === 'result') resolve((m as ChildEnd<R> & { type: 'result' }).result)
      else if (m.type === 'error') reject(new Error(`${name} failed: ${(m as ChildEnd<R> & { type: 'error' }).message}`))
    })
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}) before reporting`)))
  })
  // A client killed while the benchmark is failing for another reason must not add an
  // unhandled rejection to that report; whoever awaits `result` still sees the error.
  result.catch(() => {})
  return {
    send: (m) => { if (child.connected) child.send(m) },
    on: (fn) => {
      child.on('message', (m: Out | ChildEnd<R>) => { if (m.type !== 'result' && m.type !== 'error') fn(m as Out) })
    },
    result,
    kill: () => { if (child.exitCode === null && child.signalCode === null) child.kill() },
  }
}
