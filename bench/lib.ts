/** Shared helpers for the benchmarks: where things are, statistics, table printing. */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout: the nearest directory above this file with Conductor's package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (
      existsSync(pkg) &&
      (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'conductor'
    ) {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir)
      throw new Error('bench: cannot find the Conductor checkout above ' + import.meta.url);
    dir = up;
  }
}

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path !== '' ? path : undefined;
}

export function quantile(samples: number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (sorted[lo] ?? NaN) + ((sorted[hi] ?? NaN) - (sorted[lo] ?? NaN)) * (pos - lo);
}

export const median = (samples: number[]): number => quantile(samples, 0.5);

/** Parses `--name value` / `--name=value` flags into a map; bare `--flag` maps to 'true'. */
/** A flag's whole number of at least 1 (`--name N`), or `fallback` when it is not given. */
export function positiveFlag(flags: Map<string, string>, name: string, fallback: number): number {
  const n = Number(flags.get(name) ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

export function parseFlags(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf('=');
    if (eq > 0) {
      out.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else if (i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('--')) {
      out.set(arg.slice(2), argv[i + 1] ?? '');
      i++;
    } else {
      out.set(arg.slice(2), 'true');
    }
  }
  return out;
}

/** Left-aligned first column, right-aligned numbers. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join('  '),
    )
    .join('\n');
}

/** First non-empty line of a failed command's output, for one-line failure reports. */
export function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? 'no output'
  );
}
