/**
 * The per-kind object cache: sources write resource objects into it, reconcilers read desired
 * state from it, and its change notifications enqueue keys (client-go's indexer + informer
 * handlers, in one small class).
 *
 * Objects are shared, not copied: whoever reads one must not mutate it, and whoever writes
 * replaces the whole object with set(). Keys are `namespace/name` (cache.MetaNamespaceKeyFunc;
 * objects without a namespace are keyed by name alone).
 */
import type { Disposable } from '../reconcile/lifecycle.js';

/** The metadata the cache relies on; V1ObjectMeta and the generated API types fit it. */
export interface ObjectMetaLike {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  generation?: number;
  resourceVersion?: string;
}

export interface ObjectLike {
  metadata?: ObjectMetaLike;
}

export type CacheEvent<T> =
  | { type: 'add'; object: T }
  | { type: 'update'; oldObject: T; object: T }
  | { type: 'delete'; object: T };

export type CacheListener<T> = (event: CacheEvent<T>) => void;

/** Returns the index values an object is filed under (e.g. a Container's image name). */
export type IndexFunc<T> = (object: T) => readonly string[];

export function objectKey(object: ObjectLike): string {
  const name = object.metadata?.name;
  if (!name) throw new Error('object has no metadata.name');
  const namespace = object.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

export function namespacedKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** The inverse of objectKey: `ns/name` → {namespace: 'ns', name}; `name` → {name}. */
export function splitKey(key: string): { namespace?: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** matchLabels semantics: every selector label is present with the same value; {} matches all. */
export function matchesLabels(
  labels: Record<string, string> | undefined,
  selector: Record<string, string>,
): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

export class ObjectCache<T extends ObjectLike> {
  private readonly objects = new Map<string, T>();
  private readonly listeners = new Set<CacheListener<T>>();
  /** index name → (value → keys). */
  private readonly indices = new Map<
    string,
    { fn: IndexFunc<T>; byValue: Map<string, Set<string>> }
  >();

  /**
   * @param kind for error messages ("Container").
   * @param onListenerError told when a listener throws (the default drops the error).
   */
  constructor(
    readonly kind: string,
    private readonly onListenerError: (err: unknown) => void = () => {},
  ) {}

  get(namespace: string | undefined, name: string): T | undefined {
    return this.objects.get(namespacedKey(namespace, name));
  }

  getByKey(key: string): T | undefined {
    return this.objects.get(key);
  }

  /** All objects, or those in one namespace. */
  list(namespace?: string): T[] {
    const all = [...this.objects.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  listBySelector(selector: Record<string, string>, namespace?: string): T[] {
    return this.list(namespace).filter((o) => matchesLabels(o.metadata?.labels, selector));
  }

  keys(): string[] {
    return [...this.objects.keys()];
  }

  get size(): number {
    return this.objects.size;
  }

  /**
   * Adds or replaces an object and notifies listeners. Replacing an object by one with the same
   * metadata.resourceVersion is a no-op (a resync delivering what we have), as is setting the
   * very same object again.
   */
  set(object: T): 'added' | 'updated' | 'unchanged' {
    const key = objectKey(object);
    const old = this.objects.get(key);
    if (old === object) return 'unchanged';
    this.objects.set(key, object);
    if (old) this.unindex(key, old);
    this.index(key, object);
    const oldRv = old?.metadata?.resourceVersion;
    if (old && oldRv !== undefined && oldRv === object.metadata?.resourceVersion) {
      return 'unchanged';
    }
    this.emit(old ? { type: 'update', oldObject: old, object } : { type: 'add', object });
    return old ? 'updated' : 'added';
  }

  /** Removes the object under key and notifies listeners; returns it, or undefined if absent. */
  delete(key: string): T | undefined {
    const old = this.objects.get(key);
    if (!old) return undefined;
    this.objects.delete(key);
    this.unindex(key, old);
    this.emit({ type: 'delete', object: old });
    return old;
  }

  /**
   * Calls listener for every later change. Listeners run synchronously in set()/delete(); a
   * throwing listener does not stop the others or the write.
   */
  subscribe(listener: CacheListener<T>): Disposable {
    this.listeners.add(listener);
    return { dispose: () => void this.listeners.delete(listener) };
  }

  /** Files every object (present and future) under the values fn returns. */
  addIndex(name: string, fn: IndexFunc<T>): void {
    if (this.indices.has(name)) throw new Error(`${this.kind} cache: index ${name} already exists`);
    this.indices.set(name, { fn, byValue: new Map() });
    for (const [key, object] of this.objects) this.index(key, object, name);
  }

  /** The objects an index files under value, e.g. byIndex('image', 'default/busybox'). */
  byIndex(name: string, value: string): T[] {
    const index = this.indices.get(name);
    if (!index) throw new Error(`${this.kind} cache: no index ${name}`);
    const keys = index.byValue.get(value) ?? new Set<string>();
    return [...keys].flatMap((k) => this.objects.get(k) ?? []);
  }

  private index(key: string, object: T, only?: string): void {
    for (const [name, index] of this.indices) {
      if (only !== undefined && name !== only) continue;
      for (const value of index.fn(object)) {
        let keys = index.byValue.get(value);
        if (!keys) index.byValue.set(value, (keys = new Set()));
        keys.add(key);
      }
    }
  }

  private unindex(key: string, object: T): void {
    for (const index of this.indices.values()) {
      for (const value of index.fn(object)) {
        const keys = index.byValue.get(value);
        keys?.delete(key);
        if (keys?.size === 0) index.byValue.delete(value);
      }
    }
  }

  private emit(event: CacheEvent<T>): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        // A listener's failure is its own; the cache and the other listeners go on.
        this.onListenerError(err);
      }
    }
  }
}
