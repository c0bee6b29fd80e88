/**
 * `conductor describe KIND NAME`: one object for people, in kubectl describe's layout — name,
 * labels, the file that defines it, spec and status as indented fields, a Conditions table,
 * Events from events/…jsonl, and the errors of its file (a manifest that no longer loads leaves
 * the object as it was; the errors say why a change did not take). With --kubeconfig, the
 * object and its events.k8s.io Events from the API server.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { loadCrd, schemaOf, type JSONSchemaProps } from '../api/crd.js';
import { formatManifestError } from '../source/manifests.js';
import { COMMON_OPTIONS, NAMESPACE_OPTION, parseCommand } from './flags.js';
import { age, eventLastSeen, formatTable, pluralResourceName } from './format.js';
import { ClusterReader } from './cluster.js';
import { CliError, UsageError, type CliIO } from './io.js';
import { resolveKind } from './resources.js';
import {
  checkController,
  fileDefining,
  StateDir,
  type EventRecord,
  type SourceFile,
  type StoredObject,
} from './state.js';

export const DESCRIBE_USAGE = `Show details of a resource: spec, status, conditions, events and file errors.

Usage:
  conductor describe KIND NAME [-n NS] [--state-dir DIR | --kubeconfig PATH]

Options:
  -n, --namespace NS      namespace (default "default")
      --state-dir DIR     state directory (default /var/lib/conductor)
      --kubeconfig PATH   Kubernetes mode: the object and its Events from the API server of
                          PATH's current context
`;

export async function describe(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('describe', () =>
    parseArgs({
      args: argv,
      options: { ...COMMON_OPTIONS, ...NAMESPACE_OPTION, kubeconfig: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(DESCRIBE_USAGE);
    return 0;
  }
  const [resource, name, ...extra] = positionals;
  if (resource === undefined || name === undefined || extra.length > 0) {
    throw new UsageError('expected KIND NAME', 'describe');
  }
  const kind = resolveKind(resource);
  const namespace = values.namespace;
  const kubeconfig = values.kubeconfig;
  const state = kubeconfig === undefined ? new StateDir(values['state-dir']) : undefined;
  const reader = state ?? (await ClusterReader.open(resolve(io.cwd, kubeconfig ?? '')));
  if (state) await checkController(state, io);
  const obj = await reader.getObject(kind, namespace, name);
  // Only a watch dir has files (and their errors).
  const sources = state ? await state.readSources() : undefined;
  const file = fileDefining(sources, { kind, namespace, name });
  if (!obj) {
    throw new CliError(`${pluralResourceName(kind)} ${JSON.stringify(name)} not found`);
  }
  const events = eventsSince(
    await reader.readEvents(kind, namespace, name),
    obj.metadata.creationTimestamp,
  );
  io.stdout(
    describeObject(obj, {
      events,
      file,
      fileEntry: file === undefined ? undefined : sources?.files[file],
      schema: schemaOf(loadCrd(kind)),
      now: io.now(),
    }),
  );
  return 0;
}

/**
 * The events of this object, not of an earlier one of the same name (events outlive their
 * object for an hour): those last seen since it was created, as kubectl describe shows only
 * the Events whose involvedObject has its uid.
 */
export function eventsSince(
  events: EventRecord[],
  creationTimestamp: string | undefined,
): EventRecord[] {
  const created = creationTimestamp === undefined ? NaN : Date.parse(creationTimestamp);
  if (Number.isNaN(created)) return events;
  return events.filter((e) => !(Date.parse(e.time) < created));
}

export interface DescribeContext {
  events: EventRecord[];
  /** The watch-dir file that defines the object, relative to the watch dir. */
  file?: string;
  fileEntry?: SourceFile;
  /**
   * The kind's openAPIV3Schema: it tells fields (humanized: `containerPort` → `Container Port`)
   * from the keys of maps, which are data and printed as they are (a selector's `app`, an env
   * variable's name). Without it every key is humanized.
   */
  schema?: JSONSchemaProps;
  now: Date;
}

const METADATA_SHOWN_ABOVE = new Set(['name', 'namespace', 'labels', 'annotations']);

/** What describe prints of metadata below the header: fields, finalizers and owners. */
const METADATA_SCHEMA: JSONSchemaProps = {
  type: 'object',
  properties: Object.fromEntries(
    ['uid', 'creationTimestamp', 'generation', 'resourceVersion', 'deletionTimestamp'].map((k) => [
      k,
      { type: 'string' },
    ]),
  ),
};

/** The whole `describe` text of one object. Pure. */
export function describeObject(obj: StoredObject, ctx: DescribeContext): string {
  const { metadata } = obj;
  const lines: string[] = [];
  lines.push(
    ...fieldLines(
      [
        ['Name', metadata.name],
        ['Namespace', metadata.namespace],
        ['Labels', keyValues(metadata.labels)],
        ['Annotations', keyValues(metadata.annotations)],
        ['API Version', obj.apiVersion],
        ['Kind', obj.kind],
        ['Source', ctx.file ?? '<none>'],
      ],
      '',
    ),
  );
  const rest = Object.fromEntries(
    Object.entries(metadata).filter(([k]) => !METADATA_SHOWN_ABOVE.has(k)),
  );
  lines.push('Metadata:', ...nestedLines(rest, '  ', METADATA_SCHEMA));
  lines.push('Spec:', ...nestedLines(obj.spec ?? {}, '  ', ctx.schema?.properties?.spec));

  const { conditions, ...status } = obj.status ?? {};
  lines.push('Status:', ...nestedLines(status, '  ', ctx.schema?.properties?.status));
  lines.push(...conditionLines(conditions, ctx.now));

  const errors = ctx.fileEntry?.errors ?? [];
  if (errors.length > 0 && ctx.file !== undefined) {
    const file = ctx.file;
    lines.push('Errors:', ...errors.map((e) => `  ${formatManifestError({ ...e, file })}`));
  }
  lines.push(...eventLines(ctx.events, ctx.now));
  return lines.join('\n') + '\n';
}

/** `containerPort` → `Container Port`, `hostIP` → `Host IP`: kubectl describe's field names. */
export function humanize(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .split(' ')
    .map((w) => (ACRONYMS.has(w) ? w.toUpperCase() : w.charAt(0).toUpperCase() + w.slice(1)))
    .join(' ');
}

// Whole words kubectl (and Kubernetes field docs) write in capitals: `uid` → `UID`.
const ACRONYMS = new Set(['uid', 'ip', 'id', 'cpu', 'url', 'dns', 'tcp', 'udp', 'oom']);

function keyValues(map: Record<string, string> | undefined): string {
  const entries = Object.entries(map ?? {});
  if (entries.length === 0) return '<none>';
  // Continuation lines line up under the first value, as kubectl prints labels.
  return entries.map(([k, v]) => `${k}=${v}`).join('\n' + ' '.repeat(14));
}

/** `Label:  value` lines with values aligned in one column. */
function fieldLines(fields: [string, string][], indent: string): string[] {
  const width = Math.max(...fields.map(([k]) => k.length)) + 3;
  return fields.map(([k, v]) => `${indent}${`${k}:`.padEnd(width)}${v}`);
}

function scalar(value: unknown): string {
  if (value === null || value === undefined) return '<none>';
  if (typeof value === 'string') return value;
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The schema of one key's value below `schema`: a property of a struct, or the value schema of
 * a map (whose keys are data). `undefined` when the schema does not say.
 */
function childSchema(
  schema: JSONSchemaProps | undefined,
  key: string,
): { schema: JSONSchemaProps | undefined; isData: boolean } {
  const property = schema?.properties?.[key];
  if (property) return { schema: property, isData: false };
  const additional = schema?.additionalProperties;
  if (additional !== undefined && additional !== false && !schema?.properties)
    return { schema: typeof additional === 'object' ? additional : undefined, isData: true };
  return { schema: undefined, isData: false };
}

const isMultiline = (v: unknown): v is string => typeof v === 'string' && v.includes('\n');

/** A multi-line string's lines (a YAML block scalar's final newline is not a line of its own). */
const linesOf = (text: string): string[] => text.replace(/\n$/, '').split('\n');

/**
 * A map's fields, nested maps and lists of maps indented below their key; scalars aligned per
 * level. Items of a list of maps are separated by a blank line so they read apart. A multi-line
 * string, or a list holding one, is printed below its key, every line indented (a script in
 * args keeps its shape, as kubectl describe pod prints Args).
 */
function nestedLines(
  value: Record<string, unknown>,
  indent: string,
  schema?: JSONSchemaProps,
): string[] {
  const lines: string[] = [];
  const scalars: [string, string][] = [];
  const flush = (): void => {
    if (scalars.length > 0) lines.push(...fieldLines(scalars.splice(0), indent));
  };
  for (const [key, v] of Object.entries(value)) {
    const child = childSchema(schema, key);
    const label = child.isData ? key : humanize(key);
    if (isPlainObject(v)) {
      flush();
      lines.push(`${indent}${label}:`);
      if (Object.keys(v).length > 0) lines.push(...nestedLines(v, indent + '  ', child.schema));
    } else if (Array.isArray(v) && v.some(isPlainObject)) {
      flush();
      lines.push(`${indent}${label}:`);
      v.forEach((item, i) => {
        if (isPlainObject(item))
          lines.push(...nestedLines(item, indent + '  ', child.schema?.items));
        else lines.push(`${indent}  ${scalar(item)}`);
        if (i < v.length - 1) lines.push('');
      });
    } else if (isMultiline(v) || (Array.isArray(v) && v.some(isMultiline))) {
      flush();
      lines.push(`${indent}${label}:`);
      for (const item of Array.isArray(v) ? v : [v])
        for (const line of linesOf(scalar(item))) lines.push(`${indent}  ${line}`);
    } else if (Array.isArray(v)) {
      scalars.push([label, v.length === 0 ? '<none>' : v.map(scalar).join(', ')]);
    } else {
      scalars.push([label, scalar(v)]);
    }
  }
  flush();
  return lines;
}

function conditionLines(conditions: unknown, now: Date): string[] {
  if (!Array.isArray(conditions) || conditions.length === 0) return ['Conditions:  <none>'];
  const rows = conditions
    .filter(isPlainObject)
    .map((c) => [
      scalar(c.type),
      scalar(c.status),
      c.reason ? scalar(c.reason) : '',
      c.lastTransitionTime ? age(c.lastTransitionTime, now) : '',
      c.message ? scalar(c.message) : '',
    ]);
  const table = formatTable([
    ['Type', 'Status', 'Reason', 'Age', 'Message'],
    ['----', '------', '------', '----', '-------'],
    ...rows,
  ]);
  return [
    'Conditions:',
    ...table
      .trimEnd()
      .split('\n')
      .map((l) => `  ${l}`),
  ];
}

function eventLines(events: EventRecord[], now: Date): string[] {
  if (events.length === 0) return ['Events:  <none>'];
  const table = formatTable([
    ['Type', 'Reason', 'Age', 'Message'],
    ['----', '------', '----', '-------'],
    ...events.map((e) => [e.type, e.reason, eventLastSeen(e, now), e.message]),
  ]);
  return [
    'Events:',
    ...table
      .trimEnd()
      .split('\n')
      .map((l) => `  ${l}`),
  ];
}
