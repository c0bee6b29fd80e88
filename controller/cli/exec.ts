/**
 * `conductor exec [-i] [-t] NAME -- CMD [ARG...]`: runs a process in a running Container through
 * the runtime facade (conductor-runtime exec), with this terminal's stdout and stderr, and stdin
 * with -i. With -t the runtime allocates a pty inside the container and relays it to this
 * terminal (raw mode, window size), so `exec -it web -- sh` is an interactive shell as with
 * `docker exec -it`. The exit code is the process's (128 + signal number if a signal ended it).
 */
import { constants } from 'node:os';
import { parseArgs } from 'node:util';

import { CliError, UsageError, type CliIO } from './io.js';
import {
  clusterTarget,
  COMMON_OPTIONS,
  NAMESPACE_OPTION,
  NODE_OPTIONS,
  parseCommand,
  NODE_OPTIONS_USAGE,
  type ClusterTarget,
} from './flags.js';
import { containerOf } from './logs.js';

export const EXEC_USAGE = `Run a command in a running Container.

Usage:
  conductor exec [-i] NAME [-n NS] [--kubeconfig PATH [--node-name NODE]] -- CMD [ARG...]

Options:
  -i, --stdin             pass this terminal's stdin to the command
  -t, --tty               allocate a terminal in the container (with -i: an interactive shell)
  -n, --namespace NS      namespace (default "default")
      --state-dir DIR     state directory (default /var/lib/conductor)
${NODE_OPTIONS_USAGE}`;

export interface ExecArgs extends ClusterTarget {
  help: boolean;
  stateDir: string;
  namespace: string;
  name: string;
  stdin: boolean;
  tty: boolean;
  command: string[];
}

/** Options and NAME come before `--`; everything after it is the command, untouched. */
export function parseExecArgs(argv: string[]): ExecArgs {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const after = dash < 0 ? [] : argv.slice(dash + 1);
  const { values, positionals } = parseCommand('exec', () =>
    parseArgs({
      args: own,
      options: {
        ...COMMON_OPTIONS,
        ...NAMESPACE_OPTION,
        stdin: { type: 'boolean', short: 'i', default: false },
        tty: { type: 'boolean', short: 't', default: false },
        ...NODE_OPTIONS,
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  const base = {
    help: values.help,
    stateDir: values['state-dir'],
    namespace: values.namespace,
    stdin: values.stdin,
    tty: values.tty,
    ...clusterTarget(values),
  };
  if (values.help) return { ...base, name: '', command: [] };
  const [name, ...rest] = positionals;
  if (name === undefined) throw new UsageError('expected the name of one Container', 'exec');
  // `exec web ls` (no `--`) is accepted as kubectl once did, when nothing looks like an option.
  const command = dash < 0 ? rest : [...rest, ...after];
  if (command.length === 0) {
    throw new UsageError('you must specify a command to run after --', 'exec');
  }
  return { ...base, name: name.replace(/^(containers?|cctr)\//i, ''), command };
}

/** `docker exec`'s exit status for a child that ended by signal. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const number = signal === null ? undefined : constants.signals[signal];
  return number === undefined ? 1 : 128 + number;
}

export async function exec(argv: string[], io: CliIO): Promise<number> {
  const args = parseExecArgs(argv);
  if (args.help) {
    io.stdout(EXEC_USAGE);
    return 0;
  }
  const { id, runtime } = await containerOf(args, io.cwd);
  const child = runtime.exec(id, args.command, {
    tty: args.tty,
    stdio: [args.stdin ? 'inherit' : 'ignore', 'inherit', 'inherit'],
  });
  // Ctrl-C reaches the whole foreground process group, the exec'd process included; this
  // side only waits for it to end rather than dying first and orphaning the output.
  const ignore = (): void => undefined;
  io.signals.once('SIGINT', ignore);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', (err) => reject(new CliError(`exec in ${id}: ${err.message}`)));
      child.on('close', (code, signal) => resolve(exitStatus(code, signal)));
    });
  } finally {
    io.signals.removeListener('SIGINT', ignore);
  }
}
