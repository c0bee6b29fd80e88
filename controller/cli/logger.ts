/**
 * The controller's log for `conductor up`: one line per entry on stderr,
 * `2026-11-28T12:00:00.000Z INFO  container started id=default_web`, debug lines only with -v.
 */
import type { LogFields, Logger } from '../../runtime-core/src/index.js';

function formatValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message);
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text !== undefined && /^[^\s"=]+$/.test(text)
    ? text
    : JSON.stringify(text ?? String(value));
}

/** A line of the log: time, level, message, then `key=value` fields (quoted when needed). */
export function formatLogLine(time: Date, level: string, msg: string, fields?: LogFields): string {
  const rest = Object.entries(fields ?? {})
    .map(([k, v]) => ` ${k}=${formatValue(v)}`)
    .join('');
  return `${time.toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${rest}\n`;
}

export function streamLogger(
  write: (line: string) => void,
  opts: { debug: boolean; now: () => Date },
): Logger {
  const at =
    (level: string) =>
    (msg: string, fields?: LogFields): void =>
      write(formatLogLine(opts.now(), level, msg, fields));
  return {
    debug: opts.debug ? at('debug') : () => undefined,
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  };
}
