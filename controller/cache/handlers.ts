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

/** Enqueues the changed object's own key on every add, update and delete. */
export function enqueueForObject<T extends ObjectLike>(
  cache: ObjectCache<T>,
  queue: KeyQueue,
): Disposable {
  return cache.subscribe((event) => queue.add(objectKey(event.object)));
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
