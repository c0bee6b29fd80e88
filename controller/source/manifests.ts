/**
 * Manifest parsing: the text of one file → the resource objects it defines, or errors that say
 * where (file, line, column, field path) and why. Pure: no I/O, no clock.
 *
 * A file holds YAML (any number of `---`-separated documents) or JSON (one value). A document
 * may also be a `kind: List` with `items`, as `kubectl get -o yaml` prints. Empty documents
 * (nothing, or only comments) are skipped. Each object is checked here only for what identity
 * needs — apiVersion, kind, metadata.name, metadata.namespace (defaulted to "default") — and
 * then handed to the injected `validate` callback, which does schema validation and defaulting
 * and reports errors with apiserver-style field paths (`spec.ports[0].containerPort`); those
 * paths are mapped back to the node's line and column in the file.
 *
 * A file either parses completely or not at all: any error in any document means the file
 * defines nothing new (`objects` is empty and `errors` is not), so a caller can keep what the
 * file defined before rather than apply half of it.
 */
import { basename } from 'node:path';

import { isNode, LineCounter, parseAllDocuments, parseDocument } from 'yaml';
import type { Document, ParsedNode } from 'yaml';

/** The minimal shape every resource object has; generated API types satisfy it. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
}

/** The part of Kubernetes' ObjectMeta that sources read or set. */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** Identity of an object in directory mode: a second definition of it is a conflict. */
export interface ObjectIdentity {
  kind: string;
  namespace: string;
  name: string;
}

/** One field error, as the validation package reports it. */
export interface FieldError {
  /** apiserver-style path: `spec.ports[0].containerPort`; '' for the whole object. */
  path: string;
  message: string;
}

/** The contract of controller/validation's `validate`: schema validation plus defaulting. */
export type ValidateFn<T> = (
  obj: unknown,
) => { ok: true; object: T } | { ok: false; errors: FieldError[] };

/** An error in a manifest file. line and column are 1-based and present when known. */
export interface ManifestError {
  file: string;
  line?: number;
  column?: number;
  /** Field path inside the object (`spec.image`), when the error is about a field. */
  path?: string;
  message: string;
}

/** An object a file defines, with where its document starts. */
export interface ParsedObject<T> {
  identity: ObjectIdentity;
  object: T;
  /** 1-based line of the object's node in the file. */
  line: number;
}

export interface ParseResult<T> {
  objects: ParsedObject<T>[];
  /** Non-empty if and only if the file is rejected as a whole. */
  errors: ManifestError[];
}

export interface ParseOptions<T> {
  /** Name used in errors; also selects JSON parsing when it ends in `.json`. */
  file: string;
  validate: ValidateFn<T>;
  /** Defaults to JSON for `.json` files and YAML otherwise. */
  format?: 'yaml' | 'json';
}

export const DEFAULT_NAMESPACE = 'default';

/** The key that identifies an object across files: `kind/namespace/name`. */
export function identityKey(id: ObjectIdentity): string {
  return `${id.kind}/${id.namespace}/${id.name}`;
}

/** `web.yaml:12:3: spec.image: Required value`, the form compilers and kubectl users read. */
export function formatManifestError(e: ManifestError): string {
  let where = e.file;
  if (e.line !== undefined) where += `:${e.line}`;
  if (e.line !== undefined && e.column !== undefined) where += `:${e.column}`;
  return e.path ? `${where}: ${e.path}: ${e.message}` : `${where}: ${e.message}`;
}

// RFC 1123 names, as the apiserver checks metadata.name (subdomain) and namespace (label) of
// custom resources; names end up in paths, cgroups and DNS, so the same rules apply here.
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

// A document whose aliases expand past this is rejected ("billion laughs").
const MAX_ALIAS_COUNT = 100;

type YamlDoc = Document.Parsed<ParsedNode, true>;

/** Parses one file. Never throws on input: every problem is an entry in `errors`. */
export function parseManifests<T>(text: string, options: ParseOptions<T>): ParseResult<T> {
  const { file, validate } = options;
  const format = options.format ?? (file.toLowerCase().endsWith('.json') ? 'json' : 'yaml');
  const lineCounter = new LineCounter();
  const parseOpts = { lineCounter, prettyErrors: false, uniqueKeys: true, version: '1.2' as const };
  const docs: YamlDoc[] =
    format === 'json'
      ? [parseDocument(text, parseOpts)]
      : Array.from(parseAllDocuments(text, parseOpts));

  const errors: ManifestError[] = [];
  const at = (offset: number | undefined): { line?: number; column?: number } => {
    if (offset === undefined) return {};
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };

  // Syntax errors first: if any document is malformed, nothing in the file is trusted.
  for (const doc of docs) {
    for (const err of doc.errors)
      errors.push({ file, ...at(err.pos[0]), message: yamlMessage(err.message) });
  }
  if (errors.length > 0) return { objects: [], errors };

  const objects: ParsedObject<T>[] = [];
  const seen = new Map<string, number>();
  for (const doc of docs) {
    if (doc.contents === null) continue; // empty document
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      errors.push({ file, ...at(doc.contents.range[0]), message: errorMessage(err) });
      continue;
    }
    if (value === null || value === undefined) continue; // a document that is just `~`

    // `kind: List` documents carry their objects under `items`.
    const entries: { value: unknown; prefix: (string | number)[] }[] = [];
    if (isRecord(value) && value.kind === 'List' && Array.isArray(value.items)) {
      (value.items as unknown[]).forEach((item, i) =>
        entries.push({ value: item, prefix: ['items', i] }),
      );
    } else {
      entries.push({ value, prefix: [] });
    }

    for (const entry of entries) {
      const locate = (path: string): { line?: number; column?: number } =>
        at(nodeOffset(doc, [...entry.prefix, ...parseFieldPath(path)]));
      const fail = (path: string, message: string): void => {
        errors.push({ file, ...locate(path), ...(path ? { path } : {}), message });
      };

      const checked = checkIdentity(entry.value);
      if (!checked.ok) {
        for (const e of checked.errors) fail(e.path, e.message);
        continue;
      }
      const result = validate(checked.object);
      if (!result.ok) {
        for (const e of result.errors) fail(e.path, e.message);
        continue;
      }
      const identity = identityOf(result.object);
      if (identity === undefined) {
        fail('metadata.name', 'Required value: validation returned an object without an identity');
        continue;
      }
      const line = locate('').line ?? 1;
      const key = identityKey(identity);
      const firstLine = seen.get(key);
      if (firstLine !== undefined) {
        errors.push({
          file,
          line,
          message: `Duplicate value: ${describeIdentity(identity)} is already defined at ${file}:${firstLine}`,
        });
        continue;
      }
      seen.set(key, line);
      objects.push({ identity, object: result.object, line });
    }
  }
  return errors.length > 0 ? { objects: [], errors } : { objects, errors };
}

/** `Container default/web`: how errors and logs name an object. */
export function describeIdentity(id: ObjectIdentity): string {
  return `${id.kind} ${id.namespace}/${id.name}`;
}

/** Reads (kind, namespace, name) from an object; undefined if any part is missing. */
export function identityOf(obj: unknown): ObjectIdentity | undefined {
  if (!isRecord(obj) || typeof obj.kind !== 'string' || !isRecord(obj.metadata)) return undefined;
  const { name, namespace } = obj.metadata;
  if (typeof name !== 'string' || name === '') return undefined;
  return {
    kind: obj.kind,
    namespace: typeof namespace === 'string' && namespace !== '' ? namespace : DEFAULT_NAMESPACE,
    name,
  };
}

/**
 * The checks identity needs, with apiserver wording. Returns a copy of the object with
 * metadata.namespace defaulted, so `validate` sees what will be stored.
 */
export function checkIdentity(
  value: unknown,
): { ok: true; object: KubeObject } | { ok: false; errors: FieldError[] } {
  if (!isRecord(value)) {
    return {
      ok: false,
      errors: [{ path: '', message: `Invalid value: expected an object, got ${typeName(value)}` }],
    };
  }
  const errors: FieldError[] = [];
  for (const field of ['apiVersion', 'kind'] as const) {
    const v = value[field];
    if (v === undefined || v === '') errors.push({ path: field, message: 'Required value' });
    else if (typeof v !== 'string')
      errors.push({ path: field, message: `Invalid value: expected a string, got ${typeName(v)}` });
  }
  const metadata = value.metadata;
  if (metadata === undefined) {
    errors.push({ path: 'metadata.name', message: 'Required value: name is required' });
    return { ok: false, errors };
  }
  if (!isRecord(metadata)) {
    errors.push({
      path: 'metadata',
      message: `Invalid value: expected an object, got ${typeName(metadata)}`,
    });
    return { ok: false, errors };
  }
  const { name, namespace } = metadata;
  if (name === undefined || name === '') {
    errors.push({ path: 'metadata.name', message: 'Required value: name is required' });
  } else if (typeof name !== 'string') {
    errors.push({
      path: 'metadata.name',
      message: `Invalid value: expected a string, got ${typeName(name)}`,
    });
  } else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    errors.push({
      path: 'metadata.name',
      message:
        `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case ` +
        `alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character ` +
        `(at most 253 characters)`,
    });
  }
  if (namespace !== undefined && namespace !== '') {
    if (typeof namespace !== 'string') {
      errors.push({
        path: 'metadata.namespace',
        message: `Invalid value: expected a string, got ${typeName(namespace)}`,
      });
    } else if (namespace.length > 63 || !DNS1123_LABEL.test(namespace)) {
      errors.push({
        path: 'metadata.namespace',
        message:
          `Invalid value: ${JSON.stringify(namespace)}: a lowercase RFC 1123 label must consist of lower case ` +
          `alphanumeric characters or '-', and must start and end with an alphanumeric character (at most 63 characters)`,
      });
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  const object = {
    ...value,
    metadata: {
      ...metadata,
      namespace: typeof namespace === 'string' && namespace !== '' ? namespace : DEFAULT_NAMESPACE,
    },
  } as KubeObject; // checked field by field above
  return { ok: true, object };
}

/**
 * `spec.ports[0].containerPort` → ['spec', 'ports', 0, 'containerPort']. Bracketed keys
 * (`metadata.labels[app.kubernetes.io/name]`, `['a.b']`) stay one segment.
 */
export function parseFieldPath(path: string): (string | number)[] {
  const segments: (string | number)[] = [];
  const re = /\[([^\]]*)\]|([^.[\]]+)/g;
  for (let m = re.exec(path); m !== null; m = re.exec(path)) {
    if (m[2] !== undefined) {
      segments.push(m[2]);
      continue;
    }
    const inner = (m[1] ?? '').replace(/^(['"])(.*)\1$/, '$2');
    segments.push(/^\d+$/.test(inner) ? Number(inner) : inner);
  }
  return segments;
}

/**
 * Offset of the node at `path`, or of its deepest existing ancestor (a missing required field
 * points at the object that should hold it).
 */
function nodeOffset(doc: YamlDoc, path: (string | number)[]): number | undefined {
  for (let len = path.length; len >= 0; len--) {
    const node: unknown = len === 0 ? doc.contents : doc.getIn(path.slice(0, len), true);
    if (isNode(node) && node.range) return node.range[0];
  }
  return undefined;
}

/** yaml's messages end with " at line N, column M" which our prefix already says. */
function yamlMessage(message: string): string {
  return message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

// Names that are never manifests, whatever their extension: hidden files (also editors' lock
// and swap files: `.#web.yaml`, `.web.yaml.swp`), backups, merge leftovers, vim's write probe,
// and files dpkg/rpm/ucf leave next to a config file they would have replaced.
const IGNORED_NAME = [
  /^\./,
  /~$/,
  /^#.*#$/,
  /\.sw[a-px]$/,
  /\.(bak|orig|rej|tmp|swp)$/i,
  /^4913$/,
  /\.dpkg-[a-z]+/,
  /\.(rpmnew|rpmsave|rpmorig)$/,
  /\.ucf-[a-z]+/,
];

/** A file or directory name that is never a manifest or holds none (hidden, backup, …). */
export function isIgnoredName(part: string): boolean {
  return IGNORED_NAME.some((re) => re.test(part));
}

export function hasManifestExtension(path: string): boolean {
  return MANIFEST_EXT.test(basename(path));
}

/** Whether a path relative to the watched directory names a file the source reads. */
export function isManifestPath(rel: string): boolean {
  const parts = rel.split(/[\\/]/);
  if (parts.some((part) => part === '' || isIgnoredName(part))) return false;
  return hasManifestExtension(rel);
}
