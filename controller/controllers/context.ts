/**
 * What the reconcilers share: the caches (desired state), the status they write (the only
 * writer of status), events, and the runtime core. Built by the manager.
 */
import type { Kind } from '../api/kinds.js';
import type {
  Condition,
  ConductorObject,
  Container,
  Image,
  Service,
} from '../api/types.generated.js';
import { objectKey, type ObjectCache } from '../cache/cache.js';
import type { StateStore } from '../store/state-store.js';
import type { ContainerRuntime } from '../../runtime-core/src/containers.js';
import type { ImageBuilder } from '../../runtime-core/src/images/builder.js';
import type { Logger } from '../../runtime-core/src/logger.js';

type StatusOf<K extends Kind> = NonNullable<
  { Image: Image; Container: Container; Service: Service }[K]['status']
>;

export interface Caches {
  Image: ObjectCache<Image>;
  Container: ObjectCache<Container>;
  Service: ObjectCache<Service>;
}

/**
 * Status lives beside the cache, not in it: the cache holds what the source says (spec), status
 * is what Conductor observed. Every change is persisted with the object, so a restarted
 * controller — and the CLI — see it.
 */
export class StatusStore {
  private readonly statuses = new Map<string, unknown>();
  /** Told after a status changed, so dependents can be requeued. */
  onChange: (kind: Kind, key: string) => void = () => {};

  constructor(
    private readonly caches: Caches,
    private readonly store: StateStore,
  ) {}

  get<K extends Kind>(kind: K, key: string): StatusOf<K> | undefined {
    return this.statuses.get(`${kind}/${key}`) as StatusOf<K> | undefined;
  }

  /** Restores what a previous run persisted (before the first reconcile). */
  restore(kind: Kind, key: string, status: unknown): void {
    if (status !== undefined) this.statuses.set(`${kind}/${key}`, status);
  }

  async set<K extends Kind>(kind: K, key: string, status: StatusOf<K>): Promise<void> {
    const id = `${kind}/${key}`;
    if (JSON.stringify(this.statuses.get(id)) === JSON.stringify(status)) return;
    this.statuses.set(id, status);
    await this.persist(kind, key);
    this.onChange(kind, key);
  }

  /** Writes the object as `get -o json` shows it: the cached spec plus our status. */
  async persist(kind: Kind, key: string): Promise<void> {
    const object = (this.caches[kind] as ObjectCache<ConductorObject>).getByKey(key);
    if (!object) return;
    const status = this.statuses.get(`${kind}/${key}`);
    await this.store.writeObject({ ...object, ...(status ? { status } : {}) } as ConductorObject);
  }

  async forget(kind: Kind, namespace: string, name: string): Promise<void> {
    this.statuses.delete(`${kind}/${objectKey({ metadata: { namespace, name } })}`);
    await this.store.removeObject(kind, namespace, name);
  }
}

export interface ReconcileContext {
  caches: Caches;
  status: StatusStore;
  store: StateStore;
  runtime: ContainerRuntime;
  /** Builds and pulls images into the layer store under the state dir. */
  images: ImageBuilder;
  stateDir: string;
  /** The manifest file (absolute) that defines an object, by `<Kind>/<namespace>/<name>`. */
  fileOf(kind: Kind, key: string): string | undefined;
  logger: Logger;
  now(): Date;
}

export function event(
  ctx: ReconcileContext,
  kind: Kind,
  object: { metadata: { namespace: string; name: string } },
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
): void {
  const { namespace, name } = object.metadata;
  ctx.logger.info(`${reason}: ${message}`, { kind, namespace, name, type });
  void ctx.store
    .recordEvent(kind, namespace, name, { time: ctx.now().toISOString(), type, reason, message })
    .catch((err: unknown) => ctx.logger.error('recording an event failed', { err: String(err) }));
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
