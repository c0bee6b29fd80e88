/**
 * A Kubernetes API server as a Client (client/client.ts): Conductor as the node agent of a
 * cluster. List+watch informers (@kubernetes/client-node's makeInformer) for images, containers
 * and services.conductor.dev in all namespaces fill the same caches the manifest directory
 * fills, so the reconcilers and event handlers run unchanged; status goes back through the
 * status subresource, transitions become events.k8s.io/v1 Events.
 *
 * What client-go's reflector does and client-node's informer leaves to its user:
 * - an informer stops on an error (the API server restarting, a refused list): it is restarted
 *   with jittered exponential back-off, resuming from its last resourceVersion (a 410 Gone
 *   makes it re-list);
 * - a watchdog restarts a kind's informer that has been silent (no list, connect or event) for
 *   longer than a timeout — the client's watch reconnects every 30 s of quiet, so silence means
 *   a wedged list or watch — with a fresh informer and a full re-list;
 * - every list replaces what the cache holds (objects missing from it are deleted), so nothing
 *   deleted while a watch was down stays behind; the watch asks for bookmarks.
 *
 * Nodes: each agent runs the Containers bound to its node (spec.nodeName). An unbound Container
 * is claimed — spec.nodeName set, with the finalizer, in one patch conditional on the version
 * seen — by the first agent to try (the others get a 409 and see it bound); until then it is
 * in no cache. Containers bound to other nodes are in the cache (Services take endpoints from
 * every node) but their finalizer, deletion and status are their own agent's.
 *
 * Deletion: every object this agent handles carries the finalizer `conductor.dev/cleanup`,
 * added (a metadata patch) before the object first reaches the cache, so no host state exists
 * for an object the API server could delete without us. An object with a deletionTimestamp is
 * taken out of the cache: the reconcilers see it gone (get() undefined), release its host
 * state, and call finalize(), which removes the finalizer; then the API server deletes it.
 * Apart from claiming an unbound Container, nothing here ever writes spec.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import {
  ApiException,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  V1MicroTime,
  type EventsV1Event,
  type Informer,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';

import { sameJson } from '../api/canonical.js';
import { SharedConnectionsKubeConfig } from './kubeconfig.js';
import { GROUP, KIND_NAMES, KINDS, VERSION, type Kind } from '../api/kinds.js';
import type { ConductorObject } from '../api/types.generated.js';
import { ObjectCache, objectKey } from '../cache/cache.js';
import {
  statusWriteBase,
  selects,
  ConflictError,
  NotFoundError,
  type Caches,
  type EventType,
  type ObjectOf,
  type RecordEvent,
  type SourceClient,
  type StatusOf,
} from '../client/client.js';
import type { Logger } from '../../runtime-core/src/index.js';

/** Held on every object this agent handles until its host state has been released. */
export const FINALIZER = 'conductor.dev/cleanup';
/** events.k8s.io/v1 reportingController of the agent's events. */
export const REPORTING_CONTROLLER = 'conductor.dev/agent';
/** The field manager of the agent's writes (metadata.managedFields). */
export const FIELD_MANAGER = 'conductor-agent';

/** A kind's informer silent for this long is restarted (its watch reconnects every 30 s). */
const DEFAULT_WATCHDOG_MS = 120_000;
/** Longest the first lists of all kinds may take before the start fails. */
const DEFAULT_SYNC_TIMEOUT_MS = 120_000;
/** A list that has not answered in this long is abandoned (and the informer restarted). */
const DEFAULT_LIST_TIMEOUT_MS = 60_000;
/** Events repeated within this window fold into one Event's series (client-go: 6 min). */
const SERIES_WINDOW_MS = 6 * 60_000;
/** Events remembered for folding; the oldest go first. */
const MAX_EVENT_KEYS = 4096;
/** Attempts at removing the finalizer when the object keeps changing under us. */
const FINALIZE_ATTEMPTS = 5;

export interface Backoff {
  /** The first delay. */
  baseMs: number;
  /** No delay is longer. */
  maxMs: number;
}

/** Between informer restarts: 0.5 s doubling to 30 s, each delay jittered. */
export const DEFAULT_BACKOFF: Backoff = { baseMs: 500, maxMs: 30_000 };

/**
 * The delay before retry number `attempt` (0 for the first): base·2^attempt capped at max,
 * then a random point in its upper half ("equal jitter"), so agents that failed together do
 * not come back together and flood the API server.
 */
export function backoffDelay(
  attempt: number,
  backoff: Backoff = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.max(0, attempt));
  return ceiling / 2 + random() * (ceiling / 2);
}

/** The HTTP status of a failed API call (ApiException), or of a failed watch; else undefined. */
export function apiErrorCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  if (typeof err === 'object' && err !== null) {
    const { code, statusCode } = err as { code?: unknown; statusCode?: unknown };
    if (typeof statusCode === 'number') return statusCode;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

/** A failed API call in one line: the Status message the server sent, or the error's own. */
export function describeApiError(err: unknown): string {
  if (err instanceof ApiException) {
    const body: unknown = err.body;
    let message: string | undefined;
    if (typeof body === 'string') {
      try {
        const status = JSON.parse(body) as { message?: unknown };
        if (typeof status.message === 'string') message = status.message;
      } catch {
        message = body.trim() || undefined;
      }
    } else if (typeof body === 'object' && body !== null) {
      const m = (body as { message?: unknown }).message;
      if (typeof m === 'string') message = m;
    }
    return `HTTP ${err.code}: ${message ?? 'no message'}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * What a refused status write means to a reconciler: 409 (the object changed since it was
 * read) → ConflictError, 404 → NotFoundError, anything else an error naming the object.
 */
export function statusWriteError(
  kind: Kind,
  key: string,
  readAt: string | undefined,
  err: unknown,
): Error {
  switch (apiErrorCode(err)) {
    case 409:
      return new ConflictError(kind, key, readAt, 'unknown');
    case 404:
      return new NotFoundError(kind, key);
    default:
      return new Error(`${kind} ${key}: writing status failed: ${describeApiError(err)}`, {
        cause: err,
      });
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The JSON merge patch (RFC 7386) that turns `from` into `to`: changed fields, removed ones as
 * null (a merge patch keeps what it does not mention), objects recursively, arrays whole.
 */
export function mergePatch(from: unknown, to: unknown): unknown {
  if (!isPlainObject(from) || !isPlainObject(to)) return to;
  const patch: Record<string, unknown> = {};
  for (const k of Object.keys(from)) if (to[k] === undefined) patch[k] = null;
  for (const [k, v] of Object.entries(to)) {
    if (v === undefined || sameJson(from[k], v)) continue;
    patch[k] = isPlainObject(from[k]) && isPlainObject(v) ? mergePatch(from[k], v) : v;
  }
  return patch;
}

/** The object as the cache keeps it: without managedFields, which change on every write. */
function cached<K extends Kind>(raw: KubernetesObject): ObjectOf<K> {
  const metadata: Record<string, unknown> = { ...raw.metadata };
  delete metadata.managedFields;
  return { ...raw, metadata } as unknown as ObjectOf<K>;
}

const mergePatchHeader = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

// --- events ---

/** What an event is about (an ObjectReference). */
export interface EventRegarding {
  kind: Kind;
  namespace: string;
  name: string;
  uid?: string;
}

/**
 * The key that folds repeats into one Event: the object, the type, the reason and the message
 * (tools/record's aggregation key), and who reports it.
 */
export function eventKey(
  regarding: EventRegarding,
  type: EventType,
  reason: string,
  note: string,
  reportingInstance: string,
): string {
  return JSON.stringify([
    regarding.kind,
    regarding.namespace,
    regarding.name,
    regarding.uid ?? '',
    type,
    reason,
    note,
    reportingInstance,
  ]);
}

/** Where an EventRecorder writes: events.k8s.io/v1 create and merge patch. */
export interface EventSink {
  create(namespace: string, event: EventsV1Event): Promise<void>;
  patch(namespace: string, name: string, patch: object): Promise<void>;
}

interface SeriesState {
  key: string;
  namespace: string;
  name: string;
  count: number;
  lastObserved: Date;
  /** Whether the Event exists on the server (its create succeeded). */
  created: boolean;
  /** The write in flight; repeats meanwhile are written by one patch after it. */
  writing: boolean;
  dirty: boolean;
}

/**
 * events.k8s.io/v1 Events as client-go's event recorder writes them: the first occurrence is
 * created; a repeat within SERIES_WINDOW_MS becomes the same Event's `series` (count and last
 * observation), with at most one write in flight per Event — repeats during it are folded into
 * the next patch. Best effort: a failed write is logged, never thrown.
 */
export class EventRecorder {
  private readonly series = new Map<string, SeriesState>();
  private readonly inFlight = new Set<Promise<void>>();
  private seq = 0;

  constructor(
    private readonly sink: EventSink,
    private readonly reportingInstance: string,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  record(regarding: EventRegarding, type: EventType, reason: string, note: string): void {
    const now = this.now();
    const key = eventKey(regarding, type, reason, note, this.reportingInstance);
    const old = this.series.get(key);
    if (old && now.getTime() - old.lastObserved.getTime() <= SERIES_WINDOW_MS) {
      old.count += 1;
      old.lastObserved = now;
      // Most recently used last: the oldest are dropped first.
      this.series.delete(key);
      this.series.set(key, old);
      if (old.writing) old.dirty = true;
      else this.track(this.writeSeries(old));
      return;
    }
    const state: SeriesState = {
      key,
      namespace: regarding.namespace,
      name: this.eventName(regarding.name, now),
      count: 1,
      lastObserved: now,
      created: false,
      writing: true,
      dirty: false,
    };
    this.series.delete(key);
    this.series.set(key, state);
    while (this.series.size > MAX_EVENT_KEYS) {
      const oldest = this.series.keys().next().value;
      if (oldest === undefined) break;
      this.series.delete(oldest);
    }
    const event: EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: state.name, namespace: regarding.namespace },
      eventTime: new V1MicroTime(now.getTime()),
      type,
      reason,
      action: reason,
      note: note.length > 1024 ? `${note.slice(0, 1021)}...` : note,
      regarding: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: regarding.kind,
        namespace: regarding.namespace,
        name: regarding.name,
        ...(regarding.uid !== undefined ? { uid: regarding.uid } : {}),
      },
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.reportingInstance,
    };
    this.track(
      (async () => {
        try {
          await this.sink.create(state.namespace, event);
          state.created = true;
        } catch (err) {
          this.failed('creating', state, err);
        } finally {
          state.writing = false;
        }
        if (state.dirty && state.created) await this.writeSeries(state);
      })(),
    );
  }

  /** Waits for the writes in flight (stop). */
  async flush(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async writeSeries(state: SeriesState): Promise<void> {
    if (!state.created) return;
    state.writing = true;
    try {
      do {
        state.dirty = false;
        const patch = {
          series: {
            count: state.count,
            lastObservedTime: new V1MicroTime(state.lastObserved.getTime()).toISOString(),
          },
        };
        await this.sink.patch(state.namespace, state.name, patch);
      } while (state.dirty);
    } catch (err) {
      this.failed('updating', state, err);
    } finally {
      state.writing = false;
    }
  }

  /** client-go's name: the object's, then the time in nanoseconds as hex (unique per agent). */
  private eventName(objectName: string, now: Date): string {
    this.seq = (this.seq + 1) % 1_000_000;
    const nanos = BigInt(now.getTime()) * 1_000_000n + BigInt(this.seq);
    return `${objectName}.${nanos.toString(16)}`;
  }

  /** Logged; the next occurrence creates a new Event (this one may not exist, or have expired). */
  private failed(what: string, state: SeriesState, err: unknown): void {
    if (this.series.get(state.key) === state) this.series.delete(state.key);
    this.log.warn(`${what} an event failed`, {
      namespace: state.namespace,
      event: state.name,
      err: describeApiError(err),
    });
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }
}

// --- informers ---

interface KindSink {
  /** The full list: what the cache holds becomes exactly this. */
  replace(kind: Kind, items: KubernetesObject[]): void;
  upsert(kind: Kind, object: KubernetesObject): void;
  remove(kind: Kind, object: KubernetesObject): void;
}

interface KindWatchOptions {
  kc: KubeConfig;
  api: CustomObjectsApi;
  kind: Kind;
  sink: KindSink;
  log: Logger;
  watchdogMs: number;
  listTimeoutMs: number;
  backoff: Backoff;
}

/** One kind's informer, kept alive: restarts on errors and on silence. */
class KindWatch {
  private informer: Informer<KubernetesObject> | undefined;
  /** Bumped for each new informer: callbacks of an older one are ignored. */
  private generation = 0;
  private attempts = 0;
  private lastActivity = Date.now();
  private restartTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private stopped = false;
  private listedOnce = false;
  private onListed: (() => void) | undefined;
  readonly listed: Promise<void>;
  lastError: string | undefined;

  constructor(private readonly o: KindWatchOptions) {
    this.listed = new Promise((resolve) => (this.onListed = resolve));
  }

  get hasListed(): boolean {
    return this.listedOnce;
  }

  /**
   * Why this kind is not being watched (backing off after errors for longer than the watchdog
   * tolerates silence); undefined while its informer is up or merely restarting.
   */
  health(): string | undefined {
    if (this.stopped) return `watching ${this.plural} stopped`;
    const silentMs = Date.now() - this.lastActivity;
    if (this.restartTimer === undefined || silentMs <= this.o.watchdogMs) return undefined;
    return `watching ${this.plural} has failed for ${Math.round(silentMs / 1000)} s: ${this.lastError ?? 'no answer'}`;
  }

  start(): void {
    this.open();
    const every = Math.max(10, Math.min(this.o.watchdogMs / 4, 10_000));
    this.watchdog = setInterval(() => this.checkSilence(), every);
    this.watchdog.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.restartTimer);
    await this.informer?.stop();
  }

  private get plural(): string {
    return KINDS[this.o.kind].plural;
  }

  /** A new informer (a full list, then a watch from its resourceVersion). */
  private open(): void {
    const generation = ++this.generation;
    const current = (): boolean => generation === this.generation && !this.stopped;
    const { kind, sink } = this.o;
    const informer = makeInformer<KubernetesObject>(
      this.o.kc,
      `/apis/${GROUP}/${VERSION}/${this.plural}?allowWatchBookmarks=true`,
      () => this.list(current),
    );
    informer.on('add', (obj) => {
      if (current()) this.event(() => sink.upsert(kind, obj));
    });
    informer.on('update', (obj) => {
      if (current()) this.event(() => sink.upsert(kind, obj));
    });
    informer.on('delete', (obj) => {
      if (current()) this.event(() => sink.remove(kind, obj));
    });
    informer.on('connect', () => {
      if (current()) this.lastActivity = Date.now();
    });
    informer.on('error', (err: unknown) => {
      if (current()) this.failed(informer, err);
    });
    this.informer = informer;
    this.lastActivity = Date.now();
    this.run(informer, current);
  }

  private run(informer: Informer<KubernetesObject>, current: () => boolean): void {
    informer
      .start()
      .then(
        // Stopped (or replaced) while it listed: the watch it opened after goes too.
        () => (current() ? undefined : informer.stop()),
        (err: unknown) => (current() ? this.failed(informer, err) : undefined),
      )
      .catch((err: unknown) =>
        this.o.log.warn('stopping an informer failed', { err: String(err) }),
      );
  }

  private async list(current: () => boolean): Promise<KubernetesListObject<KubernetesObject>> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`listing ${this.plural} took longer than ${this.o.listTimeoutMs} ms`)),
        this.o.listTimeoutMs,
      );
    });
    try {
      const list = (await Promise.race([
        this.o.api.listCustomObjectForAllNamespaces({
          group: GROUP,
          version: VERSION,
          resourcePlural: this.plural,
        }),
        timeout,
      ])) as KubernetesListObject<KubernetesObject>;
      if (current()) {
        this.event(() => this.o.sink.replace(this.o.kind, list.items ?? []));
        this.attempts = 0;
        if (!this.listedOnce) {
          this.listedOnce = true;
          this.onListed?.();
        }
      }
      return list;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Something arrived: the informer is alive, the back-off starts over. */
  private event(apply: () => void): void {
    this.lastActivity = Date.now();
    this.attempts = 0;
    try {
      apply();
    } catch (err) {
      // A bug in the sink must not stop the informer (whose callback this is).
      this.o.log.error(`handling a ${this.o.kind} change failed`, { err: String(err) });
    }
  }

  /** The informer stopped on an error: start it again (from its resourceVersion) later. */
  private failed(informer: Informer<KubernetesObject>, err: unknown): void {
    if (this.stopped || this.restartTimer !== undefined) return;
    const delay = backoffDelay(this.attempts++, this.o.backoff);
    this.lastError = describeApiError(err);
    this.o.log.warn(`watching ${this.plural} failed; retrying`, {
      err: this.lastError,
      retryInMs: Math.round(delay),
    });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped || informer !== this.informer) return;
      this.lastActivity = Date.now();
      const generation = this.generation;
      this.run(informer, () => generation === this.generation && !this.stopped);
    }, delay);
    this.restartTimer.unref();
  }

  /** Silent for longer than the watchdog allows: something is wedged; start afresh. */
  private checkSilence(): void {
    if (this.stopped || this.restartTimer !== undefined) return;
    const silentMs = Date.now() - this.lastActivity;
    if (silentMs <= this.o.watchdogMs) return;
    this.o.log.warn(
      `watch of ${this.plural} silent for ${Math.round(silentMs / 1000)} s; restarting it`,
    );
    const old = this.informer;
    this.open();
    void old?.stop();
  }
}

// --- the client ---

/**
 * In-cluster configuration (client-go's InClusterConfig): the API server of
 * KUBERNETES_SERVICE_HOST/PORT, the Pod's ServiceAccount token and CA from
 * /var/run/secrets/kubernetes.io/serviceaccount/ (the token re-read as kubelet rotates it).
 */
export interface InClusterConfig {
  /** The filesystem root those files are read under: '/' in a Pod (default); tests use another. */
  root?: string;
}

const SERVICE_ACCOUNT_DIR = 'var/run/secrets/kubernetes.io/serviceaccount';

export interface KubernetesClientOptions {
  /** A kubeconfig file; its current context is used. Exactly one of this and inCluster. */
  kubeconfig?: string;
  /** The Pod's own configuration instead of a kubeconfig (`conductor up --in-cluster`). */
  inCluster?: InClusterConfig;
  /** This agent's node: the reportingInstance of its events. */
  nodeName: string;
  /** This node's labels (`--node-labels`): an unbound Container's nodeSelector must match them. */
  nodeLabels?: Readonly<Record<string, string>>;
  /**
   * The directory the relative paths of Images (copy sources, `from:` paths) resolve against
   * (`conductor up --build-context`); without it an Image from the API server has none.
   */
  buildContext?: string;
  logger: Logger;
  /** A kind's informer silent for this long is restarted (default 2 min). */
  watchdogMs?: number;
  /** How long start-up waits for the first lists (default 2 min). */
  syncTimeoutMs?: number;
  /** A list not answered in this long is abandoned (default 1 min). */
  listTimeoutMs?: number;
  /** Between informer restarts (default 0.5 s doubling to 30 s, jittered). */
  backoff?: Backoff;
  now?: () => Date;
}

type PerKind<V> = { [K in Kind]: Map<string, V> };
const perKind = <V>(): PerKind<V> => ({
  Image: new Map(),
  Container: new Map(),
  Service: new Map(),
});

export class KubernetesClient implements SourceClient {
  readonly nodeName: string;
  private readonly nodeLabels: Readonly<Record<string, string>>;
  private readonly buildContext: string | undefined;
  /** The API server and credentials it talks to, on shared connections (also the node's Lease). */
  readonly kubeConfig: SharedConnectionsKubeConfig;
  readonly caches: Caches = {
    Image: new ObjectCache('Image'),
    Container: new ObjectCache('Container'),
    Service: new ObjectCache('Service'),
  };
  private readonly api: CustomObjectsApi;
  private readonly events: EventRecorder;
  private readonly log: Logger;
  private readonly watches: KindWatch[];
  private readonly syncTimeoutMs: number;
  private readonly backoff: Backoff;
  /** The resourceVersion last handled for each object (live, being deleted or pending). */
  private readonly seen = perKind<string>();
  /** Objects with a deletionTimestamp that still carry our finalizer. */
  private readonly deleting = perKind<ConductorObject>();
  /** Objects waiting for our finalizer before they enter the cache (latest version). */
  private readonly pending = perKind<ConductorObject>();
  /** `<Kind>/<key>` with a finalizer patch in flight, and those that changed meanwhile. */
  private readonly addingFinalizer = new Set<string>();
  private readonly recheck = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly writes = new Set<Promise<unknown>>();
  private readonly finalizerAttempts = new Map<string, number>();
  private synced_ = false;
  private stopped = false;
  private syncedPromise: Promise<void> | undefined;
  private abortSync: ((err: Error) => void) | undefined;

  private constructor(kc: SharedConnectionsKubeConfig, opts: KubernetesClientOptions) {
    this.nodeName = opts.nodeName;
    this.kubeConfig = kc;
    this.buildContext = opts.buildContext;
    this.nodeLabels = opts.nodeLabels ?? {};
    this.log = opts.logger;
    this.syncTimeoutMs = opts.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.api = kc.makeApiClient(CustomObjectsApi);
    const eventsApi = kc.makeApiClient(EventsV1Api);
    this.events = new EventRecorder(
      {
        create: async (namespace, body) => {
          await eventsApi.createNamespacedEvent({ namespace, body });
        },
        patch: async (namespace, name, body) => {
          await eventsApi.patchNamespacedEvent({ namespace, name, body }, mergePatchHeader());
        },
      },
      opts.nodeName,
      this.log,
      opts.now,
    );
    const sink: KindSink = {
      replace: (kind, items) => this.replace(kind, items),
      upsert: (kind, obj) => this.upsert(kind, obj),
      remove: (kind, obj) => this.removeKey(kind, objectKey(obj)),
    };
    this.watches = KIND_NAMES.map(
      (kind) =>
        new KindWatch({
          kc,
          api: this.api,
          kind,
          sink,
          log: this.log,
          watchdogMs: opts.watchdogMs ?? DEFAULT_WATCHDOG_MS,
          listTimeoutMs: opts.listTimeoutMs ?? DEFAULT_LIST_TIMEOUT_MS,
          backoff: this.backoff,
        }),
    );
  }

  /** Reads the kubeconfig; nothing talks to the API server before start(). */
  static async open(opts: KubernetesClientOptions): Promise<KubernetesClient> {
    if (opts.inCluster !== undefined) {
      if (opts.kubeconfig !== undefined)
        throw new Error('--kubeconfig and --in-cluster exclude each other');
      const kc = new SharedConnectionsKubeConfig();
      loadInCluster(kc, opts.inCluster);
      return new KubernetesClient(kc, opts);
    }
    if (opts.kubeconfig === undefined) throw new Error('needs --kubeconfig PATH or --in-cluster');
    return new KubernetesClient(loadKubeconfig(opts.kubeconfig), opts);
  }

  // --- Source ---

  start(): Promise<void> {
    for (const w of this.watches) w.start();
    return Promise.resolve();
  }

  /**
   * Resolves once every kind has been listed (and the lists are in the caches); rejects after
   * syncTimeoutMs with what the API server said, or when stopped first.
   */
  synced(): Promise<void> {
    this.syncedPromise ??= new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const missing = this.watches
          .map((w, i) =>
            w.hasListed ? undefined : `${KIND_NAMES[i]}: ${w.lastError ?? 'no answer'}`,
          )
          .filter((m) => m !== undefined);
        reject(
          new Error(
            `the API server's objects were not listed within ${this.syncTimeoutMs} ms (${missing.join('; ')})`,
          ),
        );
      }, this.syncTimeoutMs);
      this.abortSync = (err) => {
        clearTimeout(timer);
        reject(err);
      };
      void Promise.all(this.watches.map((w) => w.listed)).then(() => {
        clearTimeout(timer);
        this.synced_ = true;
        resolve();
      });
    });
    return this.syncedPromise;
  }

  hasSynced(): boolean {
    return this.synced_;
  }

  health(): string | undefined {
    if (this.stopped) return 'the Kubernetes source stopped';
    const failing = this.watches.map((w) => w.health()).filter((h) => h !== undefined);
    return failing.length ? failing.join('; ') : undefined;
  }

  /** Stops the informers and waits for the writes in flight (events, finalizers). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abortSync?.(new Error('the Kubernetes source was stopped before it synced'));
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.all(this.watches.map((w) => w.stop()));
    await Promise.allSettled([...this.writes]);
    await this.events.flush();
    await this.kubeConfig.closeConnections();
  }

  /** Objects being deleted that still hold our finalizer: their host state is to be released. */
  leftoverKeys(): { kind: Kind; key: string }[] {
    return KIND_NAMES.flatMap((kind) =>
      [...this.deleting[kind].keys()].map((key) => ({ kind, key })),
    );
  }

  // --- Client ---

  get<K extends Kind>(kind: K, key: string): ObjectOf<K> | undefined {
    return this.cache(kind).getByKey(key);
  }

  list<K extends Kind>(kind: K, namespace?: string): ObjectOf<K>[] {
    return this.cache(kind).list(namespace);
  }

  async updateStatus<K extends Kind>(
    kind: K,
    object: ObjectOf<K>,
    status: StatusOf<K>,
  ): Promise<ObjectOf<K>> {
    const { key, current, unchanged } = statusWriteBase(this.cache(kind), kind, object, status);
    if (unchanged) return current;
    const readAt = object.metadata.resourceVersion;
    const { namespace, name } = object.metadata;
    let raw: KubernetesObject;
    try {
      raw = (await this.track(
        this.api.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            namespace,
            plural: KINDS[kind].plural,
            name,
            // The resourceVersion makes the patch conditional: a 409 if the object changed.
            body: {
              metadata: { resourceVersion: readAt },
              status: mergePatch(object.status ?? {}, status),
            },
            fieldManager: FIELD_MANAGER,
          },
          mergePatchHeader(),
        ),
      )) as KubernetesObject;
    } catch (err) {
      throw statusWriteError(kind, key, readAt, err);
    }
    const next = cached<K>(raw);
    // Into the cache unless the watch has brought a newer version meanwhile.
    if (this.cache(kind).getByKey(key)?.metadata.resourceVersion === readAt) {
      this.seen[kind].set(key, next.metadata.resourceVersion ?? '');
      this.cache(kind).set(next);
    }
    return next;
  }

  readonly recordEvent: RecordEvent = (kind, object, type, reason, message) => {
    const { namespace, name } = object.metadata;
    const key = objectKey(object);
    const uid = (this.cache(kind).getByKey(key) ?? this.deleting[kind].get(key))?.metadata.uid;
    this.log.info(`${reason}: ${message}`, { kind, namespace, name, type });
    if (this.stopped) return;
    try {
      this.events.record(
        { kind, namespace, name, ...(uid !== undefined ? { uid } : {}) },
        type,
        reason,
        message,
      );
    } catch (err) {
      this.log.warn('recording an event failed', { err: String(err) });
    }
  };

  /** The host state is released: our finalizer goes, and with it (for the API server) the object. */
  async finalize(kind: Kind, namespace: string, name: string): Promise<void> {
    const key = objectKey({ metadata: { namespace, name } });
    let obj: ConductorObject | undefined = this.deleting[kind].get(key);
    for (let attempt = 1; obj !== undefined; attempt++) {
      const finalizers = obj.metadata.finalizers ?? [];
      if (!finalizers.includes(FINALIZER)) return;
      try {
        const raw = await this.patchMetadata(
          kind,
          obj,
          finalizers.filter((f) => f !== FINALIZER),
        );
        this.upsert(kind, raw);
        return;
      } catch (err) {
        const code = apiErrorCode(err);
        if (code === 404) return;
        if (code !== 409 || attempt >= FINALIZE_ATTEMPTS) {
          throw new Error(
            `${kind} ${key}: removing finalizer ${FINALIZER} failed: ${describeApiError(err)}`,
            {
              cause: err,
            },
          );
        }
      }
      // Changed under us (someone else's finalizer, a label): read it again.
      obj = await this.read(kind, namespace, name);
      if (!obj?.metadata.deletionTimestamp) return;
    }
  }

  contextDirOf(kind: Kind): string | undefined {
    return kind === 'Image' ? this.buildContext : undefined;
  }

  // --- the informers' events ---

  private cache<K extends Kind>(kind: K): ObjectCache<ObjectOf<K>> {
    return this.caches[kind] as ObjectCache<ObjectOf<K>>;
  }

  /** A list: objects not in it are gone (deleted while no watch ran); the rest are upserted. */
  private replace(kind: Kind, items: KubernetesObject[]): void {
    const keys = new Set(items.map((o) => objectKey(o)));
    for (const key of [...this.seen[kind].keys()]) if (!keys.has(key)) this.removeKey(kind, key);
    for (const item of items) this.upsert(kind, item);
  }

  /**
   * Whether this agent handles the object's host state (its finalizer, its deletion): every
   * Image and Service, and the Containers bound to this node. `unbound`: a Container to claim
   * (its nodeSelector matches this node's labels; one that does not is left to other nodes).
   */
  private handling(kind: Kind, obj: ConductorObject): 'here' | 'elsewhere' | 'unbound' {
    if (kind !== 'Container') return 'here';
    const spec = (obj as ObjectOf<'Container'>).spec;
    if (spec.nodeName === undefined)
      return selects(spec.nodeSelector, this.nodeLabels) ? 'unbound' : 'elsewhere';
    return spec.nodeName === this.nodeName ? 'here' : 'elsewhere';
  }

  private upsert(kind: Kind, raw: KubernetesObject): void {
    const obj = cached(raw) as ConductorObject;
    const key = objectKey(obj);
    const rv = obj.metadata.resourceVersion ?? '';
    if (this.seen[kind].get(key) === rv) return;
    this.seen[kind].set(key, rv);
    const cache = this.caches[kind] as ObjectCache<ConductorObject>;
    const handling = this.handling(kind, obj);
    const live = cache.getByKey(key) !== undefined;
    if (handling === 'elsewhere') {
      // Another agent's: seen (for its Services), never finalized or deleted from here.
      this.pending[kind].delete(key);
      this.deleting[kind].delete(key);
      if (obj.metadata.deletionTimestamp) cache.delete(key);
      else cache.set(obj);
      return;
    }
    // An unbound Container is this agent's to claim (and, when deleted with our finalizer on
    // it, to finalize).
    const mine = obj.metadata.finalizers?.includes(FINALIZER) ?? false;

    if (obj.metadata.deletionTimestamp) {
      this.pending[kind].delete(key);
      const known = this.deleting[kind].has(key);
      if (mine) this.deleting[kind].set(key, obj);
      else this.deleting[kind].delete(key);
      if (live) {
        cache.delete(key);
      } else if (mine && !known && this.synced_) {
        // Never seen alive (a watch gap) yet holding our finalizer: tell the handlers, so its
        // key is reconciled (as gone, after this returns) and what it owned released. Before
        // the first sync, leftoverKeys() does that.
        cache.set(obj);
        cache.delete(key);
      }
      return;
    }
    this.deleting[kind].delete(key);
    if (handling === 'unbound') {
      // Claimed before it enters the cache (an agent runs nothing it has not bound to itself).
      if (live) cache.delete(key);
      this.pending[kind].set(key, obj);
      this.addFinalizer(kind, key);
      return;
    }
    if (mine || live) {
      this.pending[kind].delete(key);
      cache.set(obj);
      // Ours, and someone took the finalizer off: put it back.
      if (!mine) this.addFinalizer(kind, key);
      return;
    }
    this.pending[kind].set(key, obj);
    this.addFinalizer(kind, key);
  }

  private removeKey(kind: Kind, key: string): void {
    this.seen[kind].delete(key);
    this.pending[kind].delete(key);
    this.deleting[kind].delete(key);
    this.finalizerAttempts.delete(`${kind}/${key}`);
    this.caches[kind].delete(key);
  }

  /** The object (pending, or live without it) still needs our finalizer. */
  private needsFinalizer(kind: Kind, key: string): ConductorObject | undefined {
    const obj =
      this.pending[kind].get(key) ??
      (this.caches[kind].getByKey(key) as ConductorObject | undefined);
    if (!obj || obj.metadata.deletionTimestamp) return undefined;
    const handling = this.handling(kind, obj);
    if (handling === 'unbound') return obj; // to claim, finalizer or not
    if (handling === 'elsewhere') return undefined;
    return obj.metadata.finalizers?.includes(FINALIZER) ? undefined : obj;
  }

  /**
   * Adds our finalizer with a patch conditional on the version seen — and for an unbound
   * Container claims it for this node in the same patch (spec.nodeName), so of several agents
   * trying, exactly one wins. A 409 needs nothing: the newer version (bound elsewhere, say) is on
   * its way through the watch and tries again if it must; other failures retry with back-off.
   */
  private addFinalizer(kind: Kind, key: string): void {
    const id = `${kind}/${key}`;
    if (this.stopped) return;
    if (this.addingFinalizer.has(id)) {
      this.recheck.add(id);
      return;
    }
    const obj = this.needsFinalizer(kind, key);
    if (!obj) return;
    const claim = this.handling(kind, obj) === 'unbound';
    this.addingFinalizer.add(id);
    void this.track(
      (async () => {
        try {
          const raw = await this.patchMetadata(
            kind,
            obj,
            [...(obj.metadata.finalizers ?? []).filter((f) => f !== FINALIZER), FINALIZER],
            claim ? { nodeName: this.nodeName } : undefined,
          );
          if (claim)
            this.log.info('claimed a Container for this node', { key, node: this.nodeName });
          this.finalizerAttempts.delete(id);
          this.upsert(kind, raw);
        } catch (err) {
          const code = apiErrorCode(err);
          if (code !== 409 && code !== 404 && !this.stopped) {
            const attempt = this.finalizerAttempts.get(id) ?? 0;
            this.finalizerAttempts.set(id, attempt + 1);
            const delay = backoffDelay(attempt, this.backoff);
            this.log.warn(`adding finalizer ${FINALIZER} failed; retrying`, {
              kind,
              key,
              err: describeApiError(err),
              retryInMs: Math.round(delay),
            });
            this.later(delay, () => this.addFinalizer(kind, key));
          }
        } finally {
          this.addingFinalizer.delete(id);
          if (this.recheck.delete(id)) this.addFinalizer(kind, key);
        }
      })(),
    );
  }

  /**
   * Sets metadata.finalizers, conditional on the object's resourceVersion; its spec only to
   * bind an unbound Container (`bind`).
   */
  private async patchMetadata(
    kind: Kind,
    obj: ConductorObject,
    finalizers: string[],
    bind?: { nodeName: string },
  ): Promise<KubernetesObject> {
    const { namespace, name, resourceVersion } = obj.metadata;
    return (await this.track(
      this.api.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: KINDS[kind].plural,
          name,
          body: { metadata: { resourceVersion, finalizers }, ...(bind ? { spec: bind } : {}) },
          fieldManager: FIELD_MANAGER,
        },
        mergePatchHeader(),
      ),
    )) as KubernetesObject;
  }

  /** The object as the API server has it now; undefined when it is gone. */
  private async read(
    kind: Kind,
    namespace: string,
    name: string,
  ): Promise<ConductorObject | undefined> {
    try {
      const raw = (await this.api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: KINDS[kind].plural,
        name,
      })) as KubernetesObject;
      return cached(raw) as ConductorObject;
    } catch (err) {
      if (apiErrorCode(err) === 404) return undefined;
      throw new Error(`${kind} ${namespace}/${name}: reading it failed: ${describeApiError(err)}`, {
        cause: err,
      });
    }
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  /** A write stop() waits for. */
  private track<T>(p: Promise<T>): Promise<T> {
    this.writes.add(p);
    void p.then(
      () => this.writes.delete(p),
      () => this.writes.delete(p),
    );
    return p;
  }
}

/** A kubeconfig file with a current context naming a cluster; errors name the flag and file. */
export function loadKubeconfig(path: string): SharedConnectionsKubeConfig {
  const kc = new SharedConnectionsKubeConfig();
  try {
    kc.loadFromFile(path);
  } catch (err) {
    throw new Error(`--kubeconfig ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!kc.getCurrentCluster())
    throw new Error(`--kubeconfig ${path}: no current context with a cluster`);
  return kc;
}

/**
 * The Pod's configuration, checked first so that a missing piece is named (client-node's own
 * loadFromCluster would make a client that fails on its first request).
 */
function loadInCluster(kc: KubeConfig, config: InClusterConfig): void {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port)
    throw new Error(
      '--in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a Pod?)',
    );
  const root = config.root ?? '/';
  const dir = join(root, SERVICE_ACCOUNT_DIR);
  for (const file of ['token', 'ca.crt']) {
    if (!existsSync(join(dir, file)))
      throw new Error(
        `--in-cluster: no ServiceAccount ${file} in ${dir} (automountServiceAccountToken off?)`,
      );
  }
  // client-node joins the prefix and its absolute paths as strings.
  kc.loadFromCluster(root === '/' ? '' : root.replace(/\/+$/, ''));
}
