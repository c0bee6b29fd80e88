/**
 * What a command may touch of the outside world, injected so `main` runs in-process in tests:
 * output streams, the clock, the working directory and process signals.
 */
import type { EventEmitter } from 'node:events';

export interface CliIO {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Relative paths in arguments are resolved against this. */
  cwd: string;
  now(): Date;
  /** Where SIGINT/SIGTERM arrive (`conductor up`, `logs -f`); default the process. */
  signals: Pick<EventEmitter, 'on' | 'once' | 'removeListener'>;
  /** stdout is a terminal (`top` redraws in place); absent: it is not. */
  isTTY?: boolean;
}

/** The IO of the real command: the process's own streams, clock and signals. */
export function processIO(): CliIO {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    cwd: process.cwd(),
    now: () => new Date(),
    signals: process,
    isTTY: process.stdout.isTTY === true,
  };
}

/**
 * A failure to report as `error: <message>` with an exit code, the way kubectl ends: no stack
 * trace, since the message already says what failed and why.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Wrong arguments: also prints the command's usage hint. Exit code 2, as getopt tools use. */
export class UsageError extends CliError {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** An error's message; duck-typed, since errors thrown by Node's internals may come from another realm. */
export function errorMessage(err: unknown): string {
  if (
    typeof err === 'object' &&
    err !== null &&
    'message' in err &&
    typeof err.message === 'string'
  ) {
    return err.message;
  }
  return String(err);
}

/**
 * Runs `body` until it returns or SIGINT/SIGTERM arrives, which aborts the signal `body` is
 * given — as a signal ends `docker logs -f` or `kubectl get -w`. Returns the exit status: 0 when
 * `body` returned, else 128 + the signal's number. What `body` throws because it was aborted is
 * the interruption, not an error; anything else is thrown.
 */
export async function untilInterrupted(
  io: Pick<CliIO, 'signals'>,
  body: (signal: AbortSignal) => Promise<void>,
): Promise<number> {
  const abort = new AbortController();
  let status = 0;
  const onInt = (): void => ((status = 130), abort.abort());
  const onTerm = (): void => ((status = 143), abort.abort());
  io.signals.once('SIGINT', onInt);
  io.signals.once('SIGTERM', onTerm);
  try {
    await body(abort.signal);
  } catch (err) {
    if (!abort.signal.aborted) throw err;
  } finally {
    io.signals.removeListener('SIGINT', onInt);
    io.signals.removeListener('SIGTERM', onTerm);
  }
  return status;
}
