/**
 * The client reconcilers read and write the world through (controller-runtime's client.Client
 * with a cache-backed reader): every source implements it — the manifest directory now
 * (source/directory-client.ts), a Kubernetes API server next. Objects carry their status; a
 * status write goes back through the same object, with the resourceVersion it was read at.
 */
import type { Kind } from '../api/kinds.js';
import type { Container, Image, Service } from '../api/types.generated.js';
import { sameJson } from '../api/canonical.js';
import { objectKey, type ObjectCache } from '../cache/cache.js';
import type { Source } from '../source/source.js';

export interface ObjectsByKind {
  Image: Image;
  Container: Container;
  Service: Service;
}
export type ObjectOf<K extends Kind> = ObjectsByKind[K];
export type StatusOf<K extends Kind> = NonNullable<ObjectOf<K>['status']>;

/** The per-kind caches a source fills: what event handlers subscribe to. */
export type Caches = { [K in Kind]: ObjectCache<ObjectOf<K>> };

/** The object changed since it was read (its resourceVersion is not the current one). */
export class ConflictError extends Error {
  constructor(
    readonly kind: Kind,
    readonly key: string,
    readonly readAt: string | undefined,
    readonly current: string | undefined,
  ) {
    super(
      `${kind} ${key}: the object has been modified (resourceVersion ${readAt ?? 'none'}, now ` +
        `${current ?? 'none'}); read it again and retry`,
    );
    this.name = 'ConflictError';
  }
}

/** The object does not exist (any more). */
export class NotFoundError extends Error {
  constructor(
    readonly kind: Kind,
    readonly key: string,
  ) {
    super(`${kind} ${key} not found`);
    this.name = 'NotFoundError';
  }
}

export type EventType = 'Normal' | 'Warning';

/** Client.recordEvent: an event about `object` of `kind`. */
export type RecordEvent = (
  kind: Kind,
  object: { metadata: { namespace: string; name: string } },
  type: EventType,
  reason: string,
  message: string,
) => void;

/** What reconcilers use: reads from the cache, writes of status and events. */
export interface Client {
  /**
   * Kubernetes mode: this agent's node. A Container bound to another node (spec.nodeName) is
   * that node's agent's to run; it is in the cache (its Services' endpoints are cluster-wide)
   * but not this agent's. Undefined where one agent runs everything (the watch directory).
   */
  readonly nodeName?: string;
  /** The object under `namespace/name`, with its status; undefined when it does not exist. */
  get<K extends Kind>(kind: K, key: string): ObjectOf<K> | undefined;
  /** Every object of a kind, or those in one namespace. */
  list<K extends Kind>(kind: K, namespace?: string): ObjectOf<K>[];
  /**
   * Writes `status` for `object` as it was read: ConflictError when the object has changed
   * since (another resourceVersion), NotFoundError when it is gone. A status equal to the
   * current one writes nothing. Returns the object as it is now (the one to write again from).
   */
  updateStatus<K extends Kind>(
    kind: K,
    object: ObjectOf<K>,
    status: StatusOf<K>,
  ): Promise<ObjectOf<K>>;
  /** Records an event about the object (folded with repeats, as the Kubernetes recorder does). */
  recordEvent: RecordEvent;
  /**
   * The object is gone and the host state it owned has been released: forget what is kept for
   * it (its persisted record; in Kubernetes, the finalizer that held its deletion).
   */
  finalize(kind: Kind, namespace: string, name: string): Promise<void>;
  /**
   * The directory the object's relative paths (an Image's copy sources) resolve against: its
   * manifest's. Undefined when it has none (an object from an API server).
   */
  contextDirOf(kind: Kind, key: string): string | undefined;
}

/**
 * The client with every recorded event also told to `observe` (after the client has taken
 * it), whatever the source: what the manager counts in conductor_events_total.
 */
export function observeEvents(
  client: Client,
  observe: (kind: Kind, type: EventType, reason: string) => void,
): Client {
  return {
    ...(client.nodeName !== undefined ? { nodeName: client.nodeName } : {}),
    get: client.get.bind(client),
    list: client.list.bind(client),
    updateStatus: client.updateStatus.bind(client),
    recordEvent: (kind, object, type, reason, message) => {
      client.recordEvent(kind, object, type, reason, message);
      observe(kind, type, reason);
    },
    finalize: client.finalize.bind(client),
    contextDirOf: client.contextDirOf.bind(client),
  };
}

/** A source that serves objects into caches and implements the client over them. */
export interface SourceClient extends Client, Source {
  readonly caches: Caches;
  /**
   * Keys known from before the start (a persisted record, a finalizer) whose objects may be
   * gone: reconciled once after the first sync, so what they owned is released.
   */
  leftoverKeys(): { kind: Kind; key: string }[];
}

/**
 * Where every source's status write starts, as the Client contract says: the object as it is
 * in the cache, NotFoundError when it is gone, ConflictError when it changed since `object` was
 * read; `unchanged` when it already has this status (nothing to write).
 */
export function statusWriteBase<K extends Kind>(
  cache: ObjectCache<ObjectOf<K>>,
  kind: K,
  object: ObjectOf<K>,
  status: StatusOf<K>,
): { key: string; current: ObjectOf<K>; unchanged: boolean } {
  const key = objectKey(object);
  const current = cache.getByKey(key);
  if (!current) throw new NotFoundError(kind, key);
  const readAt = object.metadata.resourceVersion;
  if (current.metadata.resourceVersion !== readAt)
    throw new ConflictError(kind, key, readAt, current.metadata.resourceVersion);
  return { key, current, unchanged: sameJson(current.status, status) };
}

/** Whether a node with `labels` has every label of `selector` (none: every node). */
export function selects(
  selector: Readonly<Record<string, string>> | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** Whether this agent runs `c`: everything without a node name, else what is bound to its node. */
export function runsHere(client: Pick<Client, 'nodeName'>, c: Container): boolean {
  return client.nodeName === undefined || c.spec.nodeName === client.nodeName;
}
