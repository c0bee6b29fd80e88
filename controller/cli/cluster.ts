/**
 * `get` and `describe` with `--kubeconfig`: the objects and their events from the API server
 * instead of a state dir — what the agent of each node wrote there (status through the status
 * subresource, events.k8s.io Events), as kubectl would read it. @kubernetes/client-node is
 * loaded only for these (about 0.5 s to import).
 */
import type { CustomObjectsApi, EventsV1Api } from '@kubernetes/client-node';

import { GROUP, isKind, KINDS, VERSION, type Kind } from '../api/kinds.js';
import { CliError } from './io.js';
import type { EventRecord, ListedEvent, StoredObject } from './state.js';

interface ApiEvent {
  type?: string;
  reason?: string;
  note?: string;
  eventTime?: string | Date;
  deprecatedFirstTimestamp?: string | Date;
  deprecatedLastTimestamp?: string | Date;
  deprecatedCount?: number;
  series?: { count?: number; lastObservedTime?: string | Date };
  regarding?: {
    apiVersion?: string;
    kind?: string;
    name?: string;
    namespace?: string;
    uid?: string;
  };
  reportingController?: string;
  reportingInstance?: string;
  metadata?: { name?: string; namespace?: string; creationTimestamp?: string | Date };
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
    private readonly custom: CustomObjectsApi,
    private readonly events: EventsV1Api,
  ) {}

  static async open(kubeconfig: string): Promise<ClusterReader> {
    // The agent's own loading (same errors); client-node comes with it, only for these commands.
    const [{ loadKubeconfig }, k8s] = await Promise.all([
      import('../source/kubernetes-client.js'),
      import('@kubernetes/client-node'),
    ]);
    let kc;
    try {
      kc = loadKubeconfig(kubeconfig);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    return new ClusterReader(
      kubeconfig,
      kc.makeApiClient(k8s.CustomObjectsApi),
      kc.makeApiClient(k8s.EventsV1Api),
    );
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

  async listObjects(kind: Kind, namespace?: string): Promise<StoredObject[]> {
    const plural = KINDS[kind].plural;
    try {
      const r = (await (namespace === undefined
        ? this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
        : this.custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural,
          }))) as { items?: StoredObject[] };
      return r.items ?? [];
    } catch (err) {
      return this.fail(err);
    }
  }

  async getObject(kind: Kind, namespace: string, name: string): Promise<StoredObject | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: KINDS[kind].plural,
        name,
      })) as StoredObject;
    } catch (err) {
      if ((err as HttpError).code === 404) return undefined;
      return this.fail(err);
    }
  }

  /**
   * The Events about Conductor's objects (regarding an Image, Container or Service of
   * conductor.dev) in one namespace, or in all (`namespace` undefined); unsorted.
   */
  async listEvents(namespace?: string): Promise<ListedEvent[]> {
    let all: ApiEvent[];
    try {
      const list =
        namespace === undefined
          ? await this.events.listEventForAllNamespaces()
          : await this.events.listNamespacedEvent({ namespace });
      all = (list.items ?? []) as ApiEvent[];
    } catch (err) {
      return this.fail(err);
    }
    const out: ListedEvent[] = [];
    for (const e of all) {
      const r = e.regarding;
      if (!isKind(r?.kind) || (r.apiVersion !== undefined && !r.apiVersion.startsWith(`${GROUP}/`)))
        continue;
      const ns = e.metadata?.namespace ?? r.namespace ?? '';
      const source = [e.reportingController, e.reportingInstance].filter(Boolean).join(', ');
      out.push({
        key: `${ns}/${e.metadata?.name ?? JSON.stringify(e)}`,
        namespace: ns,
        kind: r.kind,
        name: r.name ?? '',
        event: eventRecord(e),
        ...(source ? { source } : {}),
        object: e,
      });
    }
    return out;
  }

  /** The object's Events (regarding it), oldest first. */
  async readEvents(kind: Kind, namespace: string, name: string): Promise<EventRecord[]> {
    return (await this.listEvents(namespace))
      .filter((e) => e.kind === kind && e.name === name)
      .map((e) => e.event)
      .sort((a, b) => a.time.localeCompare(b.time));
  }
}
