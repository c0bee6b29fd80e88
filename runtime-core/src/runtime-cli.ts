/**
 * The OCI runtime command line (conductor-runtime, runc or crun), called asynchronously.
 * Failures carry the command and the runtime's stderr.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { basename } from 'node:path';

import { runProcess, type RunResult } from './spawn.js';

export class RuntimeCommandError extends Error {
  constructor(
    readonly command: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    cause?: unknown,
  ) {
    const why =
      stderr.trim() || (cause instanceof Error ? cause.message : `exit code ${String(exitCode)}`);
    super(`${command.join(' ')}: ${why}`, { cause });
    this.name = 'RuntimeCommandError';
  }
}

export interface OciState {
  ociVersion: string;
  id: string;
  status: 'creating' | 'created' | 'running' | 'stopped';
  pid: number;
  bundle: string;
  annotations?: Record<string, string>;
}

/** A process run in a container's namespaces (`runtime exec`); stdio defaults to pipes. */
export interface ExecOptions {
  env?: Record<string, string>;
  cwd?: string;
  user?: { uid: number; gid?: number };
  /** A terminal inside the container, relayed by the runtime to its own stdio (`exec -t`). */
  tty?: boolean;
  stdio?: StdioOptions;
}

export class OciRuntimeCli {
  constructor(
    readonly path: string,
    readonly root: string,
  ) {}

  /** runc takes everything after the id as the command and would exec a literal "--". */
  private get wantsDoubleDash(): boolean {
    return basename(this.path) !== 'runc';
  }

  async run(args: string[], timeoutMs = 60000): Promise<{ stdout: string; stderr: string }> {
    const command = [basename(this.path), ...args];
    let r: RunResult;
    try {
      r = await runProcess(this.path, ['--root', this.root, ...args], { timeoutMs });
    } catch (err) {
      throw new RuntimeCommandError(command, null, '', err);
    }
    if (r.code === 0) return { stdout: r.stdout, stderr: r.stderr };
    const how = r.timedOut
      ? new Error(`killed after ${timeoutMs} ms`)
      : r.signal
        ? new Error(`killed by ${r.signal}`)
        : undefined;
    throw new RuntimeCommandError(command, r.code, r.stderr, how);
  }

  async kill(id: string, signal: string): Promise<void> {
    await this.run(['kill', id, signal]);
  }

  async delete(id: string, force: boolean): Promise<void> {
    await this.run(force ? ['delete', '--force', id] : ['delete', id]);
  }

  async state(id: string): Promise<OciState> {
    const { stdout } = await this.run(['state', id]);
    return JSON.parse(stdout) as OciState;
  }

  execArgv(id: string, argv: string[], opts: ExecOptions = {}): string[] {
    const args = ['--root', this.root, 'exec'];
    for (const [k, v] of Object.entries(opts.env ?? {})) args.push('--env', `${k}=${v}`);
    if (opts.cwd !== undefined) args.push('--cwd', opts.cwd);
    if (opts.user !== undefined) {
      args.push(
        '--user',
        opts.user.gid === undefined ? `${opts.user.uid}` : `${opts.user.uid}:${opts.user.gid}`,
      );
    }
    if (opts.tty) args.push('--tty');
    args.push(id);
    if (this.wantsDoubleDash) args.push('--');
    return [...args, ...argv];
  }

  exec(id: string, argv: string[], opts: ExecOptions = {}): ChildProcess {
    return spawn(this.path, this.execArgv(id, argv, opts), { stdio: opts.stdio ?? 'pipe' });
  }
}
