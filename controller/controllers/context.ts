/**
 * What the reconcilers share: the client (objects with their status from the source's cache,
 * status and event writes back to it) and the runtime core. Built by the manager; unit tests
 * build it with fakes of both.
 */
import type { NodeImages } from './node-images.js';
import type { Condition } from '../api/types.generated.js';
import type { Kind } from '../api/kinds.js';
import {
  ConflictError,
  NotFoundError,
  type Client,
  type ObjectOf,
  type StatusOf,
} from '../client/client.js';
import type { Logger, RuntimeCoreApi } from '../../runtime-core/src/index.js';
import type { KnownNode } from '../source/node-lease.js';

export interface ReconcileContext {
  client: Client;
  runtime: RuntimeCoreApi;
  /** What this node has built of each Image (its containers run those layers). */
  images: NodeImages;
  logger: Logger;
  now(): Date;
  /**
   * Kubernetes mode: every node as the last check of the Leases saw it (undefined before the
   * first, and in directory mode), for saying that no node can run an unbound Container.
   */
  nodes?: () => readonly KnownNode[] | undefined;
  /** Where the reconcilers report what they measure (builds, pulls); absent in unit tests. */
  metrics?: { images: ImageMetrics };
}

/** What the Image reconciler measures (controller/metrics/registry.ts exports it). */
export interface ImageMetrics {
  /** A build that pulled or ran something, from start to Ready. */
  built(seconds: number): void;
  /** The time from a build's Pulling phase to its end or its Building phase. */
  pulled(seconds: number): void;
  /** Steps found in the layer cache and steps that had to run. */
  layerCache(hits: number, misses: number): void;
}

/**
 * A reconcile's status writes for one object: each goes through the client with the object as
 * last read or written (its resourceVersion), so a spec change in between is a conflict (the
 * key is reconciled again from fresh state) rather than a status describing an older spec.
 */
export class StatusWriter<K extends Kind> {
  constructor(
    private readonly client: Client,
    readonly kind: K,
    private object: ObjectOf<K>,
  ) {}

  /** The object with the status last written. */
  get current(): ObjectOf<K> {
    return this.object;
  }

  async write(status: StatusOf<K>): Promise<void> {
    this.object = await this.client.updateStatus(this.kind, this.object, status);
  }
}

/** A status write refused because the object changed or went meanwhile: retry, never a verdict. */
export function isStaleWrite(err: unknown): boolean {
  return err instanceof ConflictError || err instanceof NotFoundError;
}

/** `namespace/name` → its parts (a key without a namespace is in `default`). */
export function splitObjectKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0
    ? { namespace: 'default', name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** Sets or replaces a condition, keeping lastTransitionTime when the status does not change. */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  next: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
): Condition[] {
  const old = conditions?.find((c) => c.type === next.type);
  const kept = conditions?.filter((c) => c.type !== next.type) ?? [];
  const lastTransitionTime =
    old && old.status === next.status ? old.lastTransitionTime : now.toISOString();
  return [...kept, { ...next, lastTransitionTime }];
}
