/**
 * `conductor logs [-f] [--tail N] NAME`: a Container's output from the runtime's log
 * (container.log, through ContainerRuntime.logs), printed as `docker logs` does: what the
 * container wrote to stdout goes to stdout, stderr to stderr, one line each, no timestamps.
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import {
  clusterTarget,
  COMMON_OPTIONS,
  NAMESPACE_OPTION,
  NODE_OPTIONS,
  NODE_OPTIONS_USAGE,
  parseCommand,
  parseCount,
  type ClusterTarget,
} from './flags.js';
import { pluralResourceName } from './format.js';
import { CliError, UsageError, untilInterrupted, type CliIO } from './io.js';
import { StateDir } from './state.js';
import { ClusterReader } from './cluster.js';
import {
  containerIdFor,
  ContainerNotFoundError,
  RuntimeCore,
} from '../../runtime-core/src/index.js';

export const LOGS_USAGE = `Print the logs of a Container.

Usage:
  conductor logs [-f] [--tail N] NAME [-n NS] [--kubeconfig PATH [--node-name NODE]]

Options:
  -f, --follow            keep printing new lines until the container exits (or Ctrl-C)
      --tail N            only the last N lines
  -n, --namespace NS      namespace (default "default")
      --state-dir DIR     state directory (default /var/lib/conductor)
${NODE_OPTIONS_USAGE}`;

export interface LogsArgs extends ClusterTarget {
  help: boolean;
  stateDir: string;
  namespace: string;
  name: string;
  follow: boolean;
  tail?: number;
}

export function parseLogsArgs(argv: string[]): LogsArgs {
  const { values, positionals } = parseCommand('logs', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        ...NAMESPACE_OPTION,
        ...NODE_OPTIONS,
        follow: { type: 'boolean', short: 'f', default: false },
        tail: { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  const base = {
    help: values.help,
    stateDir: values['state-dir'],
    namespace: values.namespace,
    follow: values.follow,
    tail: parseCount('tail', values.tail, 'logs'),
    ...clusterTarget(values),
  };
  if (values.help) return { ...base, name: '' };
  // `logs container web` / `logs containers/web` as kubectl takes them, and plain `logs web`.
  let name = positionals.length === 2 ? positionals[1] : positionals[0];
  if (positionals.length === 2 && !/^(containers?|cctr)$/i.test(positionals[0] ?? ''))
    name = undefined;
  if (positionals.length === 1) name = name?.replace(/^(containers?|cctr)\//i, '');
  if (name === undefined || name === '' || positionals.length > 2) {
    throw new UsageError('expected the name of one Container', 'logs');
  }
  return { ...base, name };
}

/**
 * The Container named on the command line, as the runtime core knows it: its id (its
 * status.containerID, or the id the controller will give it) and the core on its state dir.
 * With a kubeconfig the Container comes from the API server, and it must be bound to this node:
 * its container, logs and processes are on the node that runs it, and the error names that one.
 */
export async function containerOf(
  args: { stateDir: string; namespace: string; name: string } & ClusterTarget,
  cwd = process.cwd(),
): Promise<{ id: string; runtime: RuntimeCore }> {
  let id: string;
  if (args.kubeconfig === undefined) {
    id = await containerIdOf(new StateDir(args.stateDir), args.namespace, args.name);
  } else {
    const reader = await ClusterReader.open(resolve(cwd, args.kubeconfig));
    const obj = await reader.getObject('Container', args.namespace, args.name);
    if (!obj)
      throw new CliError(
        `${pluralResourceName('Container')} ${JSON.stringify(args.name)} not found in namespace ${args.namespace}`,
      );
    const here = args.nodeName ?? hostname().toLowerCase();
    const node = obj.spec?.nodeName;
    const what = `container ${args.namespace}/${args.name}`;
    if (typeof node !== 'string' || node === '')
      throw new CliError(`${what} is not bound to a node yet: no agent runs it`);
    if (node !== here)
      throw new CliError(
        `${what} runs on node ${node}, not on this node (${here}): run the command there, ` +
          `on ${node}'s agent's state dir`,
      );
    const status = obj.status?.containerID;
    id =
      typeof status === 'string' && status !== ''
        ? status
        : containerIdFor(args.namespace, args.name);
  }
  return { id, runtime: new RuntimeCore({ stateDir: args.stateDir }) };
}

/** The runtime's id of a Container: its status.containerID, or `<namespace>_<name>`. */
export async function containerIdOf(
  state: StateDir,
  namespace: string,
  name: string,
): Promise<string> {
  const obj = await state.getObject('Container', namespace, name);
  if (!obj)
    throw new CliError(`${pluralResourceName('Container')} ${JSON.stringify(name)} not found`);
  const id = obj.status?.containerID;
  // Not started yet: the id the controller will give it (the same rule for long names).
  return typeof id === 'string' && id !== '' ? id : containerIdFor(namespace, name);
}

export async function logs(argv: string[], io: CliIO): Promise<number> {
  const args = parseLogsArgs(argv);
  if (args.help) {
    io.stdout(LOGS_USAGE);
    return 0;
  }
  const { id, runtime } = await containerOf(args, io.cwd);
  // Ctrl-C ends a follow like a signal ends `docker logs -f`: exit status 128 + signal number.
  return untilInterrupted(io, async (signal) => {
    try {
      for await (const entry of runtime.logs(id, {
        follow: args.follow,
        tail: args.tail,
        signal,
      })) {
        (entry.stream === 'stderr' ? io.stderr : io.stdout)(entry.line + '\n');
      }
    } catch (err) {
      if (err instanceof ContainerNotFoundError) {
        throw new CliError(
          `container ${id} of ${args.namespace}/${args.name} has no logs yet (not created)`,
        );
      }
      throw err;
    }
  });
}
