/**
 * Output formatting, as kubectl prints it. Pure: objects and a clock in, text out.
 *
 * - Tables: columns padded to their widest cell plus 3 spaces (kubectl's tabwriter), headers
 *   upper-cased, the last column unpadded.
 * - Columns: NAME, then the CRD's additionalPrinterColumns (priority 0; all with `-o wide`);
 *   NAMESPACE first with --all-namespaces. A missing value is an empty cell, as kubectl shows
 *   a CRD column whose path finds nothing.
 * - AGE: apimachinery's HumanDuration (`5s`, `3m20s`, `2h`, `4d`, `2y30d`).
 * - `-o json` / `-o yaml`: the object with keys sorted (kubectl marshals maps, which sorts
 *   them), JSON indented by 4; several objects are wrapped in a `List`.
 */
import { stringify } from 'yaml';

import type { PrinterColumn } from '../api/crd.js';
import { GROUP, KINDS, type Kind } from '../api/kinds.js';
import { evaluateJsonPath } from './jsonpath.js';
import { sortKeys } from '../api/canonical.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const YEAR = 365 * DAY;

/** k8s.io/apimachinery/pkg/util/duration.HumanDuration: short and readable at every scale. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / SECOND);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(ms / MINUTE);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(ms / HOUR);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    const d = Math.floor(hours / 24);
    return h === 0 ? `${d}d` : `${d}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const years = Math.floor(ms / YEAR);
    const days = Math.floor(hours / 24) % 365;
    return days === 0 ? `${years}y` : `${years}y${days}d`;
  }
  return `${Math.floor(ms / YEAR)}y`;
}

/** The age of an RFC 3339 timestamp at `now`; `<unknown>` without one (as kubectl). */
export function age(timestamp: unknown, now: Date): string {
  if (typeof timestamp !== 'string') return '<unknown>';
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now.getTime() - t);
}

/**
 * kubectl's LAST SEEN (and describe's Age) of an event: `3s`, or `3s (x18 over 40s)` for one
 * that happened 18 times, the first time 40 s ago.
 */
export function eventLastSeen(
  e: { time: string; count?: number; firstTime?: string },
  now: Date,
): string {
  const last = age(e.time, now);
  return e.count !== undefined && e.count > 1
    ? `${last} (x${e.count} over ${age(e.firstTime ?? e.time, now)})`
    : last;
}

/** The widths formatTable() pads `rows` to (at least `min`, column by column). */
export function columnWidths(
  rows: readonly (readonly string[])[],
  min: readonly number[] = [],
): number[] {
  const widths = [...min];
  for (const row of rows) {
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  }
  return widths;
}

/**
 * Rows of cells → aligned text, one line per row, each ending in a newline. `widths`: the
 * columns' widths (columnWidths(), e.g. a watch's later rows under its first table's).
 */
export function formatTable(
  rows: readonly (readonly string[])[],
  widths: readonly number[] = columnWidths(rows),
): string {
  return rows
    .map((row) => {
      const last = row.length - 1;
      return (
        row.map((cell, i) => (i === last ? cell : cell.padEnd((widths[i] ?? 0) + 3))).join('') +
        '\n'
      );
    })
    .join('');
}

/**
 * One printer column's cell: every value the path selects, joined with commas. A date is shown
 * as its age; an integer column named Size (bytes) as docker prints sizes, as `conductor
 * images` does (kubectl, which knows no unit, prints the number).
 */
export function printerCell(obj: unknown, column: PrinterColumn, now: Date): string {
  const values = evaluateJsonPath(obj, column.jsonPath);
  if (values.length === 0) return '';
  if (column.type === 'date') return age(values[0], now);
  if (column.type === 'integer' && column.name.toLowerCase() === 'size')
    return values.map((v) => (typeof v === 'number' ? humanSize(v) : String(v))).join(',');
  return values.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))).join(',');
}

export interface TableOptions {
  columns: readonly PrinterColumn[];
  /** -o wide: priority > 0 columns too. */
  wide: boolean;
  /** -A: a NAMESPACE column first. */
  allNamespaces: boolean;
  /** `get all`: names as `container.conductor.dev/web`, so kinds in one listing are told apart. */
  qualifiedNames: boolean;
  now: Date;
}

/** The `kubectl get` table of objects of one kind, header row included. */
export function objectTable(
  kind: Kind,
  objects: readonly { metadata: { name: string; namespace: string } }[],
  opts: TableOptions,
): string[][] {
  const columns = opts.columns.filter((c) => opts.wide || (c.priority ?? 0) === 0);
  const header = [
    ...(opts.allNamespaces ? ['NAMESPACE'] : []),
    'NAME',
    ...columns.map((c) => c.name.toUpperCase()),
  ];
  const rows = objects.map((obj) => [
    ...(opts.allNamespaces ? [obj.metadata.namespace] : []),
    opts.qualifiedNames ? `${resourceName(kind)}/${obj.metadata.name}` : obj.metadata.name,
    ...columns.map((c) => printerCell(obj, c, opts.now)),
  ]);
  return [header, ...rows];
}

/** `container.conductor.dev`: how kubectl names a kind in `get all` and apply/delete output. */
export function resourceName(kind: Kind): string {
  return `${KINDS[kind].singular}.${GROUP}`;
}

/** `containers.conductor.dev`: the resource, as in kubectl's NotFound errors. */
export function pluralResourceName(kind: Kind): string {
  return `${KINDS[kind].plural}.${GROUP}`;
}

export { sortKeys };

/** kubectl's List wrapper for several objects. */
export function listOf(items: readonly unknown[]): Record<string, unknown> {
  return { apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } };
}

export function toJSON(value: unknown): string {
  return JSON.stringify(sortKeys(value), null, 4) + '\n';
}

/** YAML as kubectl prints it: sorted keys, sequences not indented under their key. */
export function toYAML(value: unknown): string {
  return stringify(sortKeys(value), { indentSeq: false, lineWidth: 0 });
}

/** Bytes as docker prints sizes: decimal units, three significant digits (`4.27MB`). */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  const text = value.toFixed(digits);
  return `${digits > 0 ? text.replace(/\.?0+$/, '') : text}${units[unit]}`;
}
