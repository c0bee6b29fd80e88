/** Runs a helper program (skopeo, debootstrap) with its output passed on line by line. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export class CommandError extends Error {
  constructor(
    readonly command: string,
    /** The last lines the command printed (stdout and stderr). */
    readonly tail: string[],
    how: string,
  ) {
    super(`${command} ${how}${tail.length ? `: ${tail.join('; ')}` : ''}`);
    this.name = 'CommandError';
  }
}

export function runCommand(
  cmd: string,
  args: string[],
  opts: {
    onLine?: (line: string) => void;
    tailLines?: number;
    describe?: (line: string) => string;
    /** The command's stdout goes to ours (a terminal: its own progress bars); stderr is kept. */
    stdoutToTerminal?: boolean;
    /** Aborting it ends the command (SIGTERM). */
    signal?: AbortSignal;
  } = {},
): Promise<void> {
  const keep = opts.tailLines ?? 5;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', opts.stdoutToTerminal ? 'inherit' : 'pipe', 'pipe'],
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const tail: string[] = [];
    const take = (line: string): void => {
      const shown = (opts.describe ?? ((l: string) => l))(line).trim();
      if (shown) {
        tail.push(shown);
        if (tail.length > keep) tail.shift();
      }
      opts.onLine?.(line);
    };
    if (child.stdout) createInterface({ input: child.stdout }).on('line', take);
    if (child.stderr) createInterface({ input: child.stderr }).on('line', take);
    child.on('error', (err) => {
      // An abort is reported by 'close' (killed by SIGTERM), like any other end.
      if (err.name === 'AbortError') return;
      reject(
        new CommandError(cmd, [], `cannot run: ${err.message} (install it: hack/install-deps.sh)`),
      );
    });
    child.on('close', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new CommandError(cmd, tail, `failed (${signal ?? `exit ${code}`})`)),
    );
  });
}
