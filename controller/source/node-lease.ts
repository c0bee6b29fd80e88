/**
 * Node heartbeats (Kubernetes mode), as the kubelet's: each agent holds a coordination.k8s.io
 * Lease, `conductor-<node>` in `kube-node-lease`, and renews it every few seconds. Every agent
 * also reads the others' Leases: a node whose Lease has not been renewed for its duration is
 * lost — what the node lifecycle controller concludes from a kubelet's Lease — and back when it
 * renews again. What to do about it (mark that node's Containers Unknown) is the caller's.
 *
 * The Lease is left in place when the agent stops: the containers it ran keep running, and its
 * expiry is how the other agents learn the node is gone.
 */
import {
  ApiException,
  CoordinationV1Api,
  V1MicroTime,
  type KubeConfig,
  type V1Lease,
} from '@kubernetes/client-node';

import type { Logger } from '../../runtime-core/src/index.js';

/** The kubelet's namespace for node heartbeats (kube-apiserver makes it). */
export const LEASE_NAMESPACE = 'kube-node-lease';
const LEASE_PREFIX = 'conductor-';
/** Labels that tell Conductor's Leases from the kubelets' in the same namespace. */
export const LEASE_LABELS = { 'app.kubernetes.io/name': 'conductor' } as const;
/** The node a Lease is for (its name is `conductor-<node>`, cut to 253 characters). */
export const NODE_LABEL = 'conductor.dev/node';

export interface LeaseTiming {
  /** A Lease not renewed for this long is expired (the kubelet's default is 40 s). */
  durationSeconds: number;
  /** How often it is renewed and the others' are read (the kubelet renews every 10 s). */
  renewMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { durationSeconds: 40, renewMs: 10_000 };

export interface NodeLeaseOptions {
  kc: KubeConfig;
  nodeName: string;
  timing?: LeaseTiming;
  log: Logger;
  /** A node's Lease expired (`since`: its last renewal); called again at every check. */
  lost(node: string, since: Date): void | Promise<void>;
  /** A node lost before renews its Lease again. */
  back(node: string): void;
  now?: () => Date;
}

/** The expiry of a Lease: its last renewal (or acquisition) plus its duration; undefined if unknown. */
export function leaseExpiry(lease: V1Lease): Date | undefined {
  const renewed = lease.spec?.renewTime ?? lease.spec?.acquireTime;
  const seconds = lease.spec?.leaseDurationSeconds;
  if (!renewed || seconds === undefined) return undefined;
  return new Date(new Date(renewed).getTime() + seconds * 1000);
}

export class NodeLease {
  private readonly api: CoordinationV1Api;
  private readonly timing: LeaseTiming;
  private readonly now: () => Date;
  private readonly name: string;
  private timer: NodeJS.Timeout | undefined;
  private tick: Promise<void> = Promise.resolve();
  private readonly lostNodes = new Set<string>();
  private stopped = false;

  constructor(private readonly o: NodeLeaseOptions) {
    this.api = o.kc.makeApiClient(CoordinationV1Api);
    this.timing = o.timing ?? DEFAULT_LEASE_TIMING;
    this.now = o.now ?? (() => new Date());
    this.name = `${LEASE_PREFIX}${o.nodeName}`.slice(0, 253);
  }

  /** Takes or renews this node's Lease (failing start-up if the API refuses), then keeps at it. */
  async start(): Promise<void> {
    await this.renew();
    this.timer = setInterval(() => {
      // One tick at a time: a slow API server does not pile them up.
      this.tick = this.tick.then(() => this.step());
    }, this.timing.renewMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.tick;
  }

  /** Nodes whose Lease has expired, as of the last check. */
  lost(): ReadonlySet<string> {
    return this.lostNodes;
  }

  private async step(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.renew();
    } catch (err) {
      this.o.log.warn('renewing the node lease failed', { lease: this.name, err: String(err) });
    }
    try {
      await this.check();
    } catch (err) {
      this.o.log.warn('reading the node leases failed', { err: String(err) });
    }
  }

  private async renew(): Promise<void> {
    const now = new V1MicroTime(this.now().getTime());
    const spec = {
      holderIdentity: this.o.nodeName,
      leaseDurationSeconds: this.timing.durationSeconds,
      renewTime: now,
    };
    try {
      await this.api.replaceNamespacedLease({
        name: this.name,
        namespace: LEASE_NAMESPACE,
        body: await this.current(spec),
      });
    } catch (err) {
      if (!(err instanceof ApiException) || err.code !== 404) throw err;
      await this.api.createNamespacedLease({
        namespace: LEASE_NAMESPACE,
        body: {
          metadata: {
            name: this.name,
            namespace: LEASE_NAMESPACE,
            labels: { ...LEASE_LABELS, [NODE_LABEL]: this.o.nodeName.slice(0, 63) },
          },
          spec: { ...spec, acquireTime: now },
        },
      });
    }
  }

  /** This node's Lease as it is, with `spec` over it (its resourceVersion keeps the write safe). */
  private async current(spec: V1Lease['spec']): Promise<V1Lease> {
    const lease = await this.api.readNamespacedLease({
      name: this.name,
      namespace: LEASE_NAMESPACE,
    });
    // Taken over again after a restart: the node is the same, the acquisition is new.
    const acquireTime =
      lease.spec?.holderIdentity === this.o.nodeName ? lease.spec.acquireTime : spec?.renewTime;
    return { ...lease, spec: { ...lease.spec, ...spec, ...(acquireTime ? { acquireTime } : {}) } };
  }

  /** Reads every agent's Lease and reports the nodes that were lost or came back. */
  private async check(): Promise<void> {
    const list = await this.api.listNamespacedLease({
      namespace: LEASE_NAMESPACE,
      labelSelector: Object.entries(LEASE_LABELS)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    });
    const now = this.now();
    for (const lease of list.items) {
      const node = lease.spec?.holderIdentity;
      if (!node || node === this.o.nodeName) continue;
      const expiry = leaseExpiry(lease);
      if (expiry && expiry.getTime() < now.getTime()) {
        if (!this.lostNodes.has(node))
          this.o.log.warn('a node stopped renewing its lease', { node, expired: expiry });
        this.lostNodes.add(node);
        const renewed = lease.spec?.renewTime ?? lease.spec?.acquireTime;
        await this.o.lost(node, renewed ? new Date(renewed) : expiry);
      } else if (this.lostNodes.delete(node)) {
        this.o.log.info('a node renews its lease again', { node });
        this.o.back(node);
      }
    }
  }
}
