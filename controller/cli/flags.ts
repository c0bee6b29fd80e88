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
