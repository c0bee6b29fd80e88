/** Argument parsing shared by every command: the common flags and parseArgs's errors. */
import { UsageError, errorMessage } from './io.js';

export const DEFAULT_STATE_DIR = '/var/lib/conductor';
export const DEFAULT_WATCH_DIR = '/etc/conductor/manifests';
export const DEFAULT_METRICS_ADDR = '127.0.0.1:9090';
export const DEFAULT_NAMESPACE = 'default';

/** Flags every command takes. */
export const COMMON_OPTIONS = {
  'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** -n/--namespace, for the commands that name objects. */
export const NAMESPACE_OPTION = {
  namespace: { type: 'string', short: 'n', default: DEFAULT_NAMESPACE },
} as const;

/**
 * Runs node:util parseArgs (strict, positionals allowed: the caller passes the config, so its
 * types flow through) and turns its errors into UsageErrors naming the command, so main prints
 * the usage hint with them.
 */
export function parseCommand<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    // Node adds a hint about `--` to unknown options; the usage hint that follows says more.
    throw new UsageError(
      errorMessage(err).replace(/\. To specify a positional argument[\s\S]*$/, ''),
      command,
    );
  }
}

/** A non-negative integer flag (`--tail 10`); `undefined` when absent. */
export function parseCount(
  flag: string,
  value: string | undefined,
  command: string,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    throw new UsageError(
      `--${flag} must be a non-negative integer, got ${JSON.stringify(value)}`,
      command,
    );
  }
  return Number(value);
}

/** Kubernetes mode for logs and exec: the Container is read from the API server. */
export interface ClusterTarget {
  kubeconfig?: string;
  /** This node's name (the agent's --node-name; default the hostname). */
  nodeName?: string;
}

export const NODE_OPTIONS = {
  kubeconfig: { type: 'string' },
  'node-name': { type: 'string' },
} as const;

export const NODE_OPTIONS_USAGE = `      --kubeconfig PATH   Kubernetes mode: the Container from the API server of PATH; it must
                          run on this node (its logs and processes are here), else its node is named
      --node-name NODE    this node's name, as its agent's --node-name (default the hostname)
`;

export function clusterTarget(values: {
  kubeconfig?: string;
  'node-name'?: string;
}): ClusterTarget {
  return {
    ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
    ...(values['node-name'] !== undefined ? { nodeName: values['node-name'] } : {}),
  };
}
