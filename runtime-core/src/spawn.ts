/**
 * Running programs from the controller without fork(): the addon's posix_spawn (native.ts,
 * spawnNative) behind the shape Node's child_process has — a child with stdio streams, its exit,
 * kill() — and runProcess(), execFile's equivalent.
 *
 * Why not child_process: libuv forks the whole controller to start a program, and fork copies
 * the page tables of everything resident on the JS thread — 4-5 ms at a controller's 110 MB,
 * during which no reconcile, probe or status write runs. A container start runs five programs
 * (CNI bridge, portmap and loopback, the shim, the first probe); a hundred containers paid
 * seconds for it. posix_spawn costs ~0.1 ms however large the controller is.
 *
 * Children are reaped by the addon's exit watcher (pidfd), never by libuv, and kill() goes
 * through the pidfd: a pid recycled after the exit is never signalled.
 */
import { Socket } from 'node:net';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';

import { killChild, spawnNative, type NativeSpawned, type NativeStdio } from './native.js';

export interface SpawnOptions {
  /** The child's whole environment; default process.env. Undefined values are left out. */
  env?: Readonly<Record<string, string | undefined>>;
  cwd?: string;
  /** stdin, stdout, stderr: default all 'ignore'. */
  stdio?: [NativeStdio, NativeStdio, NativeStdio];
  /** A session of its own (setsid), for a process that outlives the controller. */
  detached?: boolean;
}

export interface ExitStatus {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

function signalNumber(signal: NodeJS.Signals | number): number {
  if (typeof signal === 'number') return signal;
  const n = constants.signals[signal] as number | undefined;
  if (n === undefined) throw new TypeError(`unknown signal ${String(signal)}`);
  return n;
}

/** A running program started by spawnChild(). */
export class Child {
  readonly pid: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** Settles once the program has exited (and been reaped). */
  readonly exited: Promise<ExitStatus>;
  /** The exit and every piped output stream closed, as Node's 'close' event. */
  readonly closed: Promise<ExitStatus>;
  private readonly id: number;

  /** Use spawnChild(). */
  constructor(native: NativeSpawned) {
    this.pid = native.pid;
    this.id = native.id;
    const reader = (fd: number | null): Readable | null =>
      fd === null ? null : new Socket({ fd, readable: true, writable: false });
    this.stdout = reader(native.stdout);
    this.stderr = reader(native.stderr);
    this.stdin =
      native.stdin === null
        ? null
        : new Socket({ fd: native.stdin, readable: false, writable: true });
    // A program that exits without reading its input is not an error of ours.
    this.stdin?.on('error', () => undefined);
    this.exited = native.exited.then(({ code, signal }) => ({
      code,
      signal: signal === null ? null : (signalNames.get(signal) ?? null),
    }));
    const streamsClosed = [this.stdout, this.stderr].map((s) =>
      s === null ? undefined : new Promise<void>((resolve) => s.once('close', () => resolve())),
    );
    this.closed = Promise.all([this.exited, ...streamsClosed]).then(([status]) => status);
  }

  /** Signals the program (default SIGTERM); false when it has already exited. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    return killChild(this.id, signalNumber(signal));
  }
}

/**
 * Starts `file` (a path, or a name looked up in PATH) with `args`. Rejects when it cannot be
 * started, with the errno's code (ENOENT, EACCES) and the program named.
 */
export async function spawnChild(
  file: string,
  args: readonly string[],
  opts: SpawnOptions = {},
): Promise<Child> {
  // As child_process: process.env (what JS sees, not the C environment) unless told otherwise.
  const env = Object.entries(opts.env ?? process.env).flatMap(([k, v]) =>
    v === undefined ? [] : [`${k}=${v}`],
  );
  return new Child(
    await spawnNative({
      file,
      args: [file, ...args],
      env,
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      stdio: opts.stdio ?? ['ignore', 'ignore', 'ignore'],
      setsid: opts.detached === true,
    }),
  );
}

export interface RunOptions extends Pick<SpawnOptions, 'env' | 'cwd'> {
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Buffer;
  /** SIGKILL after this long; the result says timedOut. */
  timeoutMs?: number;
  /** SIGKILL when aborted; the result says aborted. */
  signal?: AbortSignal;
  /** Where stderr goes: collected ('pipe', the default), /dev/null, or ours. */
  stderr?: NativeStdio;
}

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
  /** Killed by timeoutMs. */
  timedOut: boolean;
  /** Killed because `signal` was aborted. */
  aborted: boolean;
}

/**
 * Runs a program to completion and collects its output, as execFile: resolves with the exit
 * status whatever it is (a non-zero code is the caller's to judge); rejects only when the
 * program could not be started.
 */
export async function runProcess(
  file: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const stderrMode = opts.stderr ?? 'pipe';
  if (opts.signal?.aborted)
    return { code: null, signal: null, stdout: '', stderr: '', timedOut: false, aborted: true };
  const child = await spawnChild(file, args, {
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', stderrMode],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let timedOut = false;
  let aborted = false;
  const timer =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, opts.timeoutMs);
  const onAbort = (): void => {
    aborted = true;
    child.kill('SIGKILL');
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort(); // while it was being started
  child.stdin?.end(opts.input);
  try {
    const status = await child.closed;
    return { ...status, stdout, stderr, timedOut, aborted };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}
