/**
 * `get` and `describe` with `--kubeconfig`: the objects and their events from the API server
 * instead of a state dir — what the agent of each node wrote there (status through the status
 * subresource, events.k8s.io Events), as kubectl would read it. @kubernetes/client-node is
 * loaded only for these (about 0.5 s to import).
 */
import { GROUP, KINDS, VERSION, type Kind } from '../api/kinds.js';
import { CliError } from './io.js';
import type { EventRecord, StoredObject } from './state.js';

interface ApiEvent {
  type?: string;
  reason?: string;
  note?: string;
  eventTime?: string | Date;
  deprecatedFirstTimestamp?: string | Date;
  deprecatedLastTimestamp?: string | Date;
  deprecatedCount?: number;
  series?: { count?: number; lastObservedTime?: string | Date };
  regarding?: { kind?: string; name?: string; namespace?: string; uid?: string };
  metadata?: { creationTimestamp?: string | Date };
}

const iso = (t: string | Date | undefined): string | undefined =>
  t === undefined ? undefined : t instanceof Date ? t.toISOString() : t;

/** An events.k8s.io/v1 Event as `describe` shows events: the latest time, the series' count. */
export function eventRecord(e: ApiEvent): EventRecord {
  const first =
    iso(e.eventTime) ?? iso(e.deprecatedFirstTimestamp) ?? iso(e.metadata?.creationTimestamp);
  const last = iso(e.series?.lastObservedTime) ?? iso(e.deprecatedLastTimestamp) ?? first ?? '';
  const count = e.series?.count ?? e.deprecatedCount;
  return {
    time: last,
    type: e.type === 'Warning' ? 'Warning' : 'Normal',
    reason: e.reason ?? '',
    message: e.note ?? '',
    ...(count !== undefined && count > 1 ? { count, ...(first ? { firstTime: first } : {}) } : {}),
  };
}

interface HttpError {
  code?: number;
  body?: unknown;
  message?: string;
}

export class ClusterReader {
  private constructor(
    private readonly kubeconfig: string,
    private readonly objects: {
      list(kind: Kind, namespace: string | undefined): Promise<StoredObject[]>;
      get(kind: Kind, namespace: string, name: string): Promise<StoredObject | undefined>;
      events(namespace: string): Promise<ApiEvent[]>;
    },
  ) {}

  static async open(kubeconfig: string): Promise<ClusterReader> {
    const k8s = await import('@kubernetes/client-node');
    const kc = new k8s.KubeConfig();
    try {
      kc.loadFromFile(kubeconfig);
    } catch (err) {
      throw new CliError(`--kubeconfig ${kubeconfig}: ${(err as Error).message}`);
    }
    if (!kc.getCurrentCluster())
      throw new CliError(`--kubeconfig ${kubeconfig}: no current context with a cluster`);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const events = kc.makeApiClient(k8s.EventsV1Api);
    const plural = (kind: Kind): string => KINDS[kind].plural;
    return new ClusterReader(kubeconfig, {
      async list(kind, namespace) {
        const r = (await (namespace === undefined
          ? custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: plural(kind) })
          : custom.listNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace,
              plural: plural(kind),
            }))) as { items?: StoredObject[] };
        return r.items ?? [];
      },
      async get(kind, namespace, name) {
        try {
          return (await custom.getNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural: plural(kind),
            name,
          })) as StoredObject;
        } catch (err) {
          if ((err as HttpError).code === 404) return undefined;
          throw err;
        }
      },
      async events(namespace) {
        return ((await events.listNamespacedEvent({ namespace })).items ?? []) as ApiEvent[];
      },
    });
  }

  /** What went wrong talking to the API server, said as kubectl says it. */
  private fail(err: unknown): never {
    const e = err as HttpError;
    const body = e.body as { message?: string } | string | undefined;
    const why =
      typeof body === 'object' && body?.message
        ? body.message
        : typeof body === 'string' && body !== ''
          ? body
          : (e.message ?? String(err));
    throw new CliError(`${this.kubeconfig}: ${why}`);
  }

  listObjects(kind: Kind, namespace?: string): Promise<StoredObject[]> {
    return this.objects.list(kind, namespace).catch((err: unknown) => this.fail(err));
  }

  getObject(kind: Kind, namespace: string, name: string): Promise<StoredObject | undefined> {
    return this.objects.get(kind, namespace, name).catch((err: unknown) => this.fail(err));
  }

  /** The object's Events (regarding it), oldest first. */
  async readEvents(kind: Kind, namespace: string, name: string): Promise<EventRecord[]> {
    const all = await this.objects.events(namespace).catch((err: unknown) => this.fail(err));
    return all
      .filter((e) => e.regarding?.kind === kind && e.regarding.name === name)
      .map(eventRecord)
      .sort((a, b) => a.time.localeCompare(b.time));
  }
}
