/**
 * Event handlers that turn cache changes into queue keys (controller-runtime's
 * handler.EnqueueRequestForObject and handler.EnqueueRequestsFromMapFunc).
 */
import type { Disposable } from '../reconcile/lifecycle.js';
import { objectKey, type CacheEvent, type ObjectCache, type ObjectLike } from './cache.js';

/** Anything keys can be added to; a WorkQueue<string> fits. */
export interface KeyQueue {
  add(key: string): void;
}

/**
 * Enqueues the changed object's own key on every add and delete, and on the updates `update`
 * accepts (all by default; controller-runtime's predicates).
 */
export function enqueueForObject<T extends ObjectLike>(
  cache: ObjectCache<T>,
  queue: KeyQueue,
  update: (oldObject: T, object: T) => boolean = () => true,
): Disposable {
  return cache.subscribe((event) => {
    if (event.type !== 'update' || update(event.oldObject, event.object))
      queue.add(objectKey(event.object));
  });
}

/**
 * An update predicate: anything but status and resourceVersion changed (controller-runtime's
 * GenerationChangedPredicate, widened to labels and annotations), so a reconciler's own status
 * write does not reconcile its object again.
 */
export function specChanged(oldObject: object, object: object): boolean {
  const strip = (o: object): string => {
    const copy: Record<string, unknown> = { ...(o as Record<string, unknown>) };
    delete copy.status;
    const metadata: Record<string, unknown> = { ...(copy.metadata as Record<string, unknown>) };
    delete metadata.resourceVersion;
    copy.metadata = metadata;
    return JSON.stringify(copy);
  };
  return strip(oldObject) !== strip(object);
}

/**
 * Enqueues the keys map returns for each changed object: how dependents are requeued when what
 * they depend on changes. For an update, both the old and the new object are mapped, so a
 * dependent that matched only before the change is told too.
 */
export function enqueueFromMap<T extends ObjectLike>(
  cache: ObjectCache<T>,
  queue: KeyQueue,
  map: (object: T) => readonly string[],
): Disposable {
  return cache.subscribe((event: CacheEvent<T>) => {
    const keys = new Set(map(event.object));
    if (event.type === 'update') for (const k of map(event.oldObject)) keys.add(k);
    for (const k of keys) queue.add(k);
  });
}
