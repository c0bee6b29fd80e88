/**
 * The manifest directory as a Client (client/client.ts): the DirectorySource reads the files,
 * this class keeps the objects in the caches with their status, writes status and events to the
 * state directory (controller/README.md's on-disk contract) and records what each file defined
 * or got wrong (sources.json, conductor_manifest_errors_total). A restarted controller finds
 * the status it wrote, and the objects deleted while it was down, through leftoverKeys().
 */
import { dirname, resolve } from 'node:path';

import { KIND_NAMES, type Kind } from '../api/kinds.js';
import type { ConductorObject } from '../api/types.generated.js';
import { ObjectCache, objectKey } from '../cache/cache.js';
import {
  statusWriteBase,
  type Caches,
  type RecordEvent,
  type ObjectOf,
  type SourceClient,
  type StatusOf,
} from '../client/client.js';
import type { Counter } from 'prom-client';
import { DisposableStore } from '../reconcile/lifecycle.js';
import { StateStore, type FileOutcome } from '../store/state-store.js';
import type { Logger } from '../../runtime-core/src/index.js';
import { DirectorySource } from './directory.js';
import {
  formatManifestError,
  identityKey,
  type ManifestError,
  type ObjectIdentity,
} from './manifests.js';
import type { ValidateFn } from './manifests.js';

export interface DirectoryClientOptions {
  watchDir: string;
  store: StateStore;
  validate: ValidateFn<ConductorObject>;
  /** conductor_manifest_errors_total: a series per manifest file, at 0 until it fails. */
  manifestErrors: Counter<'file'>;
  logger: Logger;
  settleMs?: number;
  now?: () => Date;
}

const EVENT_PRUNE_INTERVAL_MS = 5 * 60 * 1000;

const sameIdentity = (a: ObjectIdentity, b: ObjectIdentity): boolean =>
  a.kind === b.kind && a.namespace === b.namespace && a.name === b.name;

export class DirectoryClient implements SourceClient {
  readonly caches: Caches = {
    Image: new ObjectCache('Image'),
    Container: new ObjectCache('Container'),
    Service: new ObjectCache('Service'),
  };
  private readonly source: DirectorySource<ConductorObject>;
  private readonly store: StateStore;
  private readonly watchDir: string;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly manifestErrors: Counter<'file'>;
  /** One counter for spec changes (the source's) and status writes (ours). */
  private resourceVersion = 0;
  /** Status a previous run persisted, given to the object when the source first serves it. */
  private readonly restored = new Map<string, unknown>();
  /** Persisted keys, reconciled after the first sync (deleted while we were down?). */
  private readonly persisted: { kind: Kind; key: string }[] = [];
  /** The manifest file (absolute) of each object, by `<Kind>/<key>`. */
  private readonly files = new Map<string, string>();
  private readonly outcomes = new Map<string, FileOutcome>();
  private readonly owned = new DisposableStore();
  private sourcesWrite: NodeJS.Timeout | undefined;

  private constructor(opts: DirectoryClientOptions, previous: Map<string, object>) {
    this.store = opts.store;
    this.watchDir = resolve(opts.watchDir);
    this.log = opts.logger;
    this.now = opts.now ?? (() => new Date());
    this.manifestErrors = opts.manifestErrors;
    this.source = new DirectorySource<ConductorObject>({
      dir: this.watchDir,
      validate: opts.validate,
      previous,
      nextResourceVersion: () => this.nextResourceVersion(),
      ...(opts.settleMs !== undefined ? { settleMs: opts.settleMs } : {}),
      sink: {
        onUpsert: (obj, file) => this.upsert(obj, file),
        onDelete: (identity, file) => this.remove(identity, file),
        onError: (file, errors) => this.fileErrors(file, errors),
        onErrorResolved: (file) => this.fileErrorsResolved(file),
        onWatchError: (err) =>
          this.log.error('watching the manifests failed', { err: err.message }),
      },
    });
    // Stopped before its sync (a start that failed half-way), the source rejects synced():
    // told to whoever waits for it, never an unhandled rejection.
    this.source.synced().catch(() => undefined);
    this.owned.defer(() => clearTimeout(this.sourcesWrite));
  }

  /**
   * Reads what a previous run persisted: status survives restarts, and an object deleted while
   * the controller was down is still known, so what it owned is removed. Defined again, objects
   * keep uid, creationTimestamp and generation (the source decides).
   */
  static async open(opts: DirectoryClientOptions): Promise<DirectoryClient> {
    const previous = new Map<string, object>();
    const persisted: { kind: Kind; key: string; status: unknown }[] = [];
    for (const kind of KIND_NAMES) {
      for (const obj of await opts.store.readObjects(kind)) {
        const { namespace, name } = obj.metadata;
        persisted.push({ kind, key: objectKey(obj), status: obj.status });
        previous.set(identityKey({ kind, namespace, name }), obj);
      }
    }
    const client = new DirectoryClient(opts, previous);
    for (const { kind, key, status } of persisted) {
      client.persisted.push({ kind, key });
      if (status !== undefined) client.restored.set(`${kind}/${key}`, status);
    }
    return client;
  }

  // --- Source ---

  start(): Promise<void> {
    // Events of objects deleted over an hour ago go, now and every few minutes.
    const prune = (): void =>
      void this.store
        .pruneEvents(this.now())
        .catch((err: unknown) => this.log.warn('pruning old events failed', { err: String(err) }));
    prune();
    const timer = setInterval(prune, EVENT_PRUNE_INTERVAL_MS);
    timer.unref();
    this.owned.defer(() => clearInterval(timer));
    return this.source.start();
  }

  synced(): Promise<void> {
    return this.source.synced();
  }

  hasSynced(): boolean {
    return this.source.hasSynced();
  }

  health(): string | undefined {
    return this.source.health();
  }

  /** Stops watching and writes what is pending (sources.json, objects, events). */
  async stop(): Promise<void> {
    await this.source.stop();
    await this.owned.dispose();
    await this.store.writeSources(this.watchDir, Object.fromEntries(this.outcomes));
    await this.store.flush();
  }

  leftoverKeys(): { kind: Kind; key: string }[] {
    return [...this.persisted];
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
    const { current, unchanged } = statusWriteBase(this.cache(kind), kind, object, status);
    if (unchanged) return current;
    const next = {
      ...current,
      metadata: { ...current.metadata, resourceVersion: this.nextResourceVersion() },
      status,
    } as ObjectOf<K>;
    this.cache(kind).set(next);
    await this.store.writeObject(next);
    return next;
  }

  readonly recordEvent: RecordEvent = (kind, object, type, reason, message) => {
    const { namespace, name } = object.metadata;
    this.log.info(`${reason}: ${message}`, { kind, namespace, name, type });
    void this.store
      .recordEvent(kind, namespace, name, { time: this.now().toISOString(), type, reason, message })
      .catch((err: unknown) => this.log.error('recording an event failed', { err: String(err) }));
  };

  async finalize(kind: Kind, namespace: string, name: string): Promise<void> {
    const key = objectKey({ metadata: { namespace, name } });
    this.restored.delete(`${kind}/${key}`);
    // Defined again meanwhile: its record is the new object's.
    if (this.cache(kind).getByKey(key)) return;
    await this.store.removeObject(kind, namespace, name);
  }

  contextDirOf(kind: Kind, key: string): string | undefined {
    const file = this.files.get(`${kind}/${key}`);
    return file === undefined ? undefined : dirname(file);
  }

  // --- the source's events ---

  private cache<K extends Kind>(kind: K): ObjectCache<ObjectOf<K>> {
    return this.caches[kind] as ObjectCache<ObjectOf<K>>;
  }

  private nextResourceVersion(): string {
    this.resourceVersion += 1;
    return String(this.resourceVersion);
  }

  /** A definition changed: the object keeps the status it has (or a previous run persisted). */
  private upsert(obj: ConductorObject, file: string): void {
    const kind = obj.kind;
    const key = objectKey(obj);
    this.files.set(`${kind}/${key}`, resolve(this.watchDir, file));
    const o = this.outcome(file);
    const id = { kind, namespace: obj.metadata.namespace, name: obj.metadata.name };
    if (!o.objects.some((x) => sameIdentity(x, id))) o.objects.push(id);
    this.saveSources();
    const cache = this.caches[kind] as ObjectCache<ConductorObject>;
    const status = cache.getByKey(key)?.status ?? this.restored.get(`${kind}/${key}`);
    this.restored.delete(`${kind}/${key}`);
    const object = (status === undefined ? obj : { ...obj, status }) as ConductorObject;
    cache.set(object);
    void this.store
      .writeObject(object)
      .catch((err: unknown) => this.log.error('persisting an object failed', { err: String(err) }));
  }

  private remove(identity: ObjectIdentity, file: string): void {
    const kind = identity.kind as Kind;
    const key = `${identity.namespace}/${identity.name}`;
    const o = this.outcome(file);
    o.objects = o.objects.filter((x) => !sameIdentity(x, identity));
    if (o.objects.length === 0 && o.errors.length === 0) this.forgetOutcome(file);
    this.saveSources();
    this.caches[kind].delete(key);
    this.files.delete(`${kind}/${key}`);
  }

  private fileErrors(file: string, errors: ManifestError[]): void {
    const o = this.outcome(file);
    this.manifestErrors.inc({ file });
    o.errors = errors.map(({ line, column, path, message }) => ({
      ...(line !== undefined ? { line } : {}),
      ...(column !== undefined ? { column } : {}),
      ...(path !== undefined ? { path } : {}),
      message,
    }));
    this.saveSources();
    for (const e of errors) this.log.warn(`manifest rejected: ${formatManifestError(e)}`, { file });
  }

  private fileErrorsResolved(file: string): void {
    const o = this.outcomes.get(file);
    if (o) {
      o.errors = [];
      if (o.objects.length === 0) this.forgetOutcome(file);
    }
    this.saveSources();
  }

  /**
   * Every file that defines objects or has errors has a conductor_manifest_errors_total series,
   * at 0 until it fails, so `increase()` and alerts see its first error; it goes with the file
   * (as a deleted container's series do).
   */
  private outcome(file: string): FileOutcome {
    let o = this.outcomes.get(file);
    if (!o) {
      this.outcomes.set(file, (o = { objects: [], errors: [] }));
      this.manifestErrors.inc({ file }, 0);
    }
    return o;
  }

  private forgetOutcome(file: string): void {
    this.outcomes.delete(file);
    this.manifestErrors.remove({ file });
  }

  private saveSources(): void {
    clearTimeout(this.sourcesWrite);
    this.sourcesWrite = setTimeout(
      () => void this.store.writeSources(this.watchDir, Object.fromEntries(this.outcomes)),
      20,
    );
  }
}
