/**
 * The OCI runtime command line (conductor-runtime, runc or crun), called asynchronously.
 * Failures carry the command and the runtime's stderr.
 */
import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { basename } from 'node:path';

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

  run(args: string[], timeoutMs = 60000): Promise<{ stdout: string; stderr: string }> {
    const argv = ['--root', this.root, ...args];
    return new Promise((resolve, reject) => {
      execFile(
        this.path,
        argv,
        { timeout: timeoutMs, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          if (err) {
            const code = typeof err.code === 'number' ? err.code : null;
            reject(new RuntimeCommandError([basename(this.path), ...args], code, stderr, err));
          } else {
            resolve({ stdout, stderr });
          }
        },
      );
    });
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
