/**
 * `conductor get events` (`get ev`): what happened to Conductor's objects, as `kubectl get
 * events` prints it — LAST SEEN (`45s (x4 over 2m)` for a repeat folded into one event), TYPE,
 * REASON, OBJECT (`container/web`), MESSAGE, oldest first — from the state dir's events files,
 * or with --kubeconfig from events.k8s.io (the same reader `describe` uses). `-w` prints the
 * listing, then every event recorded or repeated since, until Ctrl-C.
 *
 * The state dir has no watch API: a watch reads the events again every half second and prints
 * the events that are new or whose count or time changed. A deleted object's events stay for
 * an hour (store/state-store.ts), so its Killing is still listed.
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

import { API_VERSION, type Kind } from '../api/kinds.js';
import { age, columnWidths, eventLastSeen, formatTable, listOf, toJSON, toYAML } from './format.js';
import { UsageError, untilInterrupted, type CliIO } from './io.js';
import { resolveKind } from './resources.js';
import type { ListedEvent } from './state.js';

/** What `get events` reads from: a state dir or an API server (StateDir, ClusterReader). */
export interface EventReader {
  listEvents(namespace?: string): Promise<ListedEvent[]>;
}

/** The resource names `get` takes for events, as kubectl does (`ev` its short name). */
export function isEventsResource(resource: string): boolean {
  return ['events', 'event', 'ev', 'events.events.k8s.io'].includes(resource.toLowerCase());
}

export interface EventsOptions {
  /** Undefined: every namespace (-A). */
  namespace: string | undefined;
  output: '' | 'wide' | 'json' | 'yaml';
  /** --for KIND/NAME: only the events of that object. */
  for?: { kind: Kind; name: string };
  watch: boolean;
  /** Between reads of a watch (ms). */
  pollMs: number;
}

/** `--for container/web` (kind as `get` takes it: plural, singular, short name). */
export function parseFor(value: string): { kind: Kind; name: string } {
  const slash = value.indexOf('/');
  if (slash <= 0 || slash === value.length - 1)
    throw new UsageError(`--for must be KIND/NAME, got ${JSON.stringify(value)}`, 'get');
  return { kind: resolveKind(value.slice(0, slash)), name: value.slice(slash + 1) };
}

/** Oldest first, by when each was last seen, as `kubectl events` sorts. */
export function sortEvents(events: ListedEvent[]): ListedEvent[] {
  const t = (s: string | undefined): number => (s === undefined ? 0 : Date.parse(s) || 0);
  return [...events].sort(
    (a, b) =>
      t(a.event.time) - t(b.event.time) ||
      t(a.event.firstTime ?? a.event.time) - t(b.event.firstTime ?? b.event.time) ||
      a.key.localeCompare(b.key),
  );
}

export interface EventTableOptions {
  allNamespaces: boolean;
  wide: boolean;
  now: Date;
}

export function eventHeader(opts: Pick<EventTableOptions, 'allNamespaces' | 'wide'>): string[] {
  return [
    ...(opts.allNamespaces ? ['NAMESPACE'] : []),
    'LAST SEEN',
    'TYPE',
    'REASON',
    'OBJECT',
    ...(opts.wide ? ['SOURCE'] : []),
    'MESSAGE',
    ...(opts.wide ? ['FIRST SEEN', 'COUNT'] : []),
  ];
}

/** One row of the table; a multi-line message (a build's output) on one line. */
export function eventRow(e: ListedEvent, opts: EventTableOptions): string[] {
  const { event } = e;
  const message = event.message.replace(/\s*\n\s*/g, ' ').trim();
  return [
    ...(opts.allNamespaces ? [e.namespace] : []),
    opts.wide ? age(event.time, opts.now) : eventLastSeen(event, opts.now),
    event.type,
    event.reason,
    `${e.kind.toLowerCase()}/${e.name}`,
    ...(opts.wide ? [e.source ?? 'conductor'] : []),
    message,
    ...(opts.wide ? [age(event.firstTime ?? event.time, opts.now), String(event.count ?? 1)] : []),
  ];
}

/**
 * The event as an events.k8s.io/v1 Event (what `-o json|yaml` prints): the API server's own
 * with --kubeconfig, else made from the state dir's record as the agent would have written it.
 */
export function eventObject(e: ListedEvent): unknown {
  // Through JSON: the client's Dates become the strings the API server sent.
  if (e.object !== undefined) return JSON.parse(JSON.stringify(e.object)) as unknown;
  const { event } = e;
  const first = event.firstTime ?? event.time;
  const nanos = BigInt(Date.parse(first) || 0) * 1_000_000n;
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: {
      name: `${e.name}.${nanos.toString(16)}`,
      namespace: e.namespace,
      creationTimestamp: first,
    },
    eventTime: first,
    ...(event.count !== undefined && event.count > 1
      ? { series: { count: event.count, lastObservedTime: event.time } }
      : {}),
    type: event.type,
    reason: event.reason,
    action: event.reason,
    note: event.message,
    regarding: {
      apiVersion: API_VERSION,
      kind: e.kind,
      namespace: e.namespace,
      name: e.name,
    },
    reportingController: 'conductor.dev/controller',
    reportingInstance: hostname(),
  };
}

/** What tells one reading of an event from the next: a repeat changes its count and time. */
const stateOf = (e: ListedEvent): string =>
  `${e.event.time}|${e.event.count ?? 1}|${e.event.firstTime ?? ''}`;

/** Runs `get events`; resolves to the exit code (130 when a watch ends with Ctrl-C). */
export async function getEvents(
  reader: EventReader,
  opts: EventsOptions,
  io: CliIO,
): Promise<number> {
  const read = async (): Promise<ListedEvent[]> => {
    const all = await reader.listEvents(opts.namespace);
    const only = opts.for;
    return sortEvents(only ? all.filter((e) => e.kind === only.kind && e.name === only.name) : all);
  };
  const table: Omit<EventTableOptions, 'now'> = {
    allNamespaces: opts.namespace === undefined,
    wide: opts.output === 'wide',
  };
  const none = (): void =>
    io.stderr(
      opts.namespace === undefined
        ? 'No resources found\n'
        : `No resources found in ${opts.namespace} namespace.\n`,
    );

  const first = await read();
  if (!opts.watch) {
    if (opts.output === 'json' || opts.output === 'yaml') {
      const list = listOf(first.map(eventObject));
      io.stdout(opts.output === 'json' ? toJSON(list) : toYAML(list));
    } else if (first.length === 0) none();
    else {
      const now = io.now();
      io.stdout(
        formatTable([eventHeader(table), ...first.map((e) => eventRow(e, { ...table, now }))]),
      );
    }
    return 0;
  }

  // A watch: the listing, then what is new or repeated, each row under the columns so far.
  let widths: number[] | undefined;
  const print = (events: ListedEvent[]): void => {
    if (opts.output === 'json') {
      for (const e of events) io.stdout(toJSON(eventObject(e)));
      return;
    }
    if (opts.output === 'yaml') {
      for (const e of events) io.stdout(`---\n${toYAML(eventObject(e))}`);
      return;
    }
    const now = io.now();
    const rows = events.map((e) => eventRow(e, { ...table, now }));
    if (widths === undefined) rows.unshift(eventHeader(table));
    widths = columnWidths(rows, widths);
    io.stdout(formatTable(rows, widths));
  };
  const seen = new Map(first.map((e) => [e.key, stateOf(e)]));
  if (first.length > 0) print(first);
  else if (opts.output !== 'json' && opts.output !== 'yaml') none();

  return untilInterrupted(io, async (signal) => {
    for (;;) {
      await sleep(opts.pollMs, undefined, { signal });
      const changed = (await read()).filter((e) => seen.get(e.key) !== stateOf(e));
      for (const e of changed) seen.set(e.key, stateOf(e));
      if (changed.length > 0) print(changed);
    }
  });
}
