/**
 * Node heartbeats (Kubernetes mode), as the kubelet's: each agent holds a coordination.k8s.io
 * Lease, `conductor-<node>` in `kube-node-lease`, and renews it every few seconds. Every agent
 * also reads the others' Leases: a node whose Lease has not been renewed for its duration is
 * lost — what the node lifecycle controller concludes from a kubelet's Lease — and back when it
 * renews again. What to do about it (mark that node's Containers Unknown) is the caller's.
 *
 * The Lease also says where the node's containers are: its part of the cluster's container
 * range (annotation conductor.dev/node-cidr, the lowest part no other Lease holds, kept across
 * restarts) and the address other nodes reach them through (conductor.dev/node-ip). Every agent
 * routes each other node's part through that address (host-gw), so containers on different
 * nodes reach each other and every node's Services reach every endpoint.
 *
 * It also carries the node's labels (conductor.dev/node-labels, `--node-labels` as JSON), so any
 * agent can tell that no node selects an unbound Container (and say so in its status, as the
 * scheduler does for a Pod).
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

import {
  cidrWithin,
  formatIPv4,
  parseCidr,
  type Cidr,
  type Logger,
} from '../../runtime-core/src/index.js';

/** The kubelet's namespace for node heartbeats (kube-apiserver makes it). */
export const LEASE_NAMESPACE = 'kube-node-lease';
const LEASE_PREFIX = 'conductor-';
/** Labels that tell Conductor's Leases from the kubelets' in the same namespace. */
export const LEASE_LABELS = { 'app.kubernetes.io/name': 'conductor' } as const;
/** The node a Lease is for (its name is `conductor-<node>`, cut to 253 characters). */
export const NODE_LABEL = 'conductor.dev/node';
/** The node's part of the container range, and its address for the other nodes. */
export const NODE_CIDR_ANNOTATION = 'conductor.dev/node-cidr';
export const NODE_IP_ANNOTATION = 'conductor.dev/node-ip';
/** The node's labels (`--node-labels`), a JSON object. */
export const NODE_LABELS_ANNOTATION = 'conductor.dev/node-labels';

/** Where a node's containers are: what its Lease says. */
export interface NodeRange {
  node: string;
  cidr: string;
  ip: string;
}

/** A node as the Leases say: its labels, and whether its Lease has expired. */
export interface KnownNode {
  node: string;
  labels: Readonly<Record<string, string>>;
  lost: boolean;
}

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
  /** This node's labels (`--node-labels`), written on its Lease. */
  labels?: Readonly<Record<string, string>>;
  timing?: LeaseTiming;
  log: Logger;
  now?: () => Date;
}

/** What the caller does with what the Leases say (NodeLease.on). */
export interface NodeLeaseHandlers {
  /** A node's Lease expired (`since`: its last renewal); called again at every check. */
  lost(node: string, since: Date): void | Promise<void>;
  /** A node lost before renews its Lease again. */
  back(node: string): void;
  /** The other nodes' ranges, at every check (for routes to them). */
  peers(ranges: NodeRange[]): void | Promise<void>;
  /** Every node with a Lease, this one included, at every check. */
  nodes?(nodes: KnownNode[]): void | Promise<void>;
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
  /** This node's range and address, once claim() has given them. */
  private range: { cidr: string; ip: string } | undefined;
  private handlers: NodeLeaseHandlers | undefined;

  constructor(private readonly o: NodeLeaseOptions) {
    this.api = o.kc.makeApiClient(CoordinationV1Api);
    this.timing = o.timing ?? DEFAULT_LEASE_TIMING;
    this.now = o.now ?? (() => new Date());
    this.name = `${LEASE_PREFIX}${o.nodeName}`.slice(0, 253);
  }

  /** Takes or renews this node's Lease (failing start-up if the API refuses), then keeps at it. */
  /** Where what the checks find goes (before start()). */
  on(handlers: NodeLeaseHandlers): void {
    this.handlers = handlers;
  }

  async start(): Promise<void> {
    await this.renew();
    // The other nodes' ranges and states now, not a renewal period later.
    await this.check().catch((err: unknown) =>
      this.o.log.warn('reading the node leases failed', { err: String(err) }),
    );
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

  /**
   * This node's part of `clusterCidr` (blocks of /`maskSize`) and its address, written on its
   * Lease: the part its Lease already names (a restart keeps its containers' addresses), else the
   * lowest no other Lease holds. Two agents picking one at once both see it after writing; the
   * one whose Lease is younger (or, made at once, whose name sorts later) picks again.
   */
  async claim(clusterCidr: Cidr, maskSize: number, ip: string): Promise<string> {
    const held = (l: V1Lease): string | undefined =>
      l.metadata?.annotations?.[NODE_CIDR_ANNOTATION];
    for (let attempt = 0; attempt < 20; attempt++) {
      const leases = await this.list();
      const mine = leases.find((l) => l.metadata?.name === this.name);
      const taken = new Set(
        leases
          .filter((l) => l.metadata?.name !== this.name)
          .map(held)
          .filter((c) => c !== undefined),
      );
      let cidr = mine ? held(mine) : undefined;
      // Held from before a change of --container-cidr (or of the part's size): not ours now.
      if (cidr !== undefined && !isBlockOf(clusterCidr, maskSize, cidr)) {
        this.o.log.info('the container range changed; this node picks a new part of it', {
          was: cidr,
          range: clusterCidr.text,
        });
        cidr = undefined;
      }
      if (cidr === undefined || taken.has(cidr)) {
        cidr = freeBlock(clusterCidr, maskSize, taken);
        if (cidr === undefined)
          throw new Error(
            `no free /${maskSize} left in the container range ${clusterCidr.text}: ${taken.size} node(s) hold one each`,
          );
      }
      this.range = { cidr, ip };
      await this.renew();
      // Picked at once by another agent too? The older Lease keeps it.
      const after = await this.list();
      const me = after.find((l) => l.metadata?.name === this.name);
      const rival = after.find(
        (l) =>
          l.metadata?.name !== this.name && held(l) === cidr && me !== undefined && older(l, me),
      );
      if (!rival) return cidr;
      this.o.log.info('another node took the same container range; picking again', {
        cidr,
        node: rival.spec?.holderIdentity,
      });
    }
    throw new Error('could not settle on a container range with the other nodes');
  }

  private async list(): Promise<V1Lease[]> {
    const list = await this.api.listNamespacedLease({
      namespace: LEASE_NAMESPACE,
      labelSelector: Object.entries(LEASE_LABELS)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    });
    return list.items;
  }

  private async renew(): Promise<void> {
    const now = new V1MicroTime(this.now().getTime());
    const spec = {
      holderIdentity: this.o.nodeName,
      leaseDurationSeconds: this.timing.durationSeconds,
      renewTime: now,
    };
    const annotations: Record<string, string> = {
      [NODE_LABELS_ANNOTATION]: JSON.stringify(this.o.labels ?? {}),
      ...(this.range
        ? { [NODE_CIDR_ANNOTATION]: this.range.cidr, [NODE_IP_ANNOTATION]: this.range.ip }
        : {}),
    };
    try {
      await this.api.replaceNamespacedLease({
        name: this.name,
        namespace: LEASE_NAMESPACE,
        body: await this.current(spec, annotations),
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
            annotations,
          },
          spec: { ...spec, acquireTime: now },
        },
      });
    }
  }

  /**
   * This node's Lease as it is, with `spec` and `annotations` over it (its resourceVersion keeps
   * the write safe).
   */
  private async current(
    spec: V1Lease['spec'],
    annotations: Record<string, string>,
  ): Promise<V1Lease> {
    const lease = await this.api.readNamespacedLease({
      name: this.name,
      namespace: LEASE_NAMESPACE,
    });
    // Taken over again after a restart: the node is the same, the acquisition is new.
    const acquireTime =
      lease.spec?.holderIdentity === this.o.nodeName ? lease.spec.acquireTime : spec?.renewTime;
    return {
      ...lease,
      metadata: {
        ...lease.metadata,
        annotations: { ...(lease.metadata?.annotations ?? {}), ...annotations },
      },
      spec: { ...lease.spec, ...spec, ...(acquireTime ? { acquireTime } : {}) },
    };
  }

  /**
   * Reads every agent's Lease: reports the other nodes' ranges (lost ones too: their containers
   * may still run), the nodes that were lost or came back, and every node's labels.
   */
  private async check(): Promise<void> {
    const leases = await this.list();
    const now = this.now();
    const ranges: NodeRange[] = [];
    for (const lease of leases) {
      const node = lease.spec?.holderIdentity;
      const cidr = lease.metadata?.annotations?.[NODE_CIDR_ANNOTATION];
      const ip = lease.metadata?.annotations?.[NODE_IP_ANNOTATION];
      if (node && node !== this.o.nodeName && cidr && ip) ranges.push({ node, cidr, ip });
    }
    await this.handlers?.peers(ranges);
    for (const lease of leases) {
      const node = lease.spec?.holderIdentity;
      if (!node || node === this.o.nodeName) continue;
      const expiry = leaseExpiry(lease);
      if (expiry && expiry.getTime() < now.getTime()) {
        if (!this.lostNodes.has(node))
          this.o.log.warn('a node stopped renewing its lease', { node, expired: expiry });
        this.lostNodes.add(node);
        const renewed = lease.spec?.renewTime ?? lease.spec?.acquireTime;
        await this.handlers?.lost(node, renewed ? new Date(renewed) : expiry);
      } else if (this.lostNodes.delete(node)) {
        this.o.log.info('a node renews its lease again', { node });
        this.handlers?.back(node);
      }
    }
    const nodes: KnownNode[] = [
      { node: this.o.nodeName, labels: this.o.labels ?? {}, lost: false },
    ];
    for (const lease of leases) {
      const node = lease.spec?.holderIdentity;
      if (!node || node === this.o.nodeName) continue;
      nodes.push({ node, labels: leaseLabels(lease), lost: this.lostNodes.has(node) });
    }
    await this.handlers?.nodes?.(nodes);
  }
}

/** A Lease's node labels; none when it has no readable annotation (an agent before them). */
export function leaseLabels(lease: V1Lease): Record<string, string> {
  const text = lease.metadata?.annotations?.[NODE_LABELS_ANNOTATION];
  if (text === undefined) return {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    return Object.fromEntries(
      Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'),
    );
  } catch {
    return {};
  }
}

/** Whether Lease `a` holds its claims before `b`: made earlier, or at once and named first. */
function older(a: V1Lease, b: V1Lease): boolean {
  const t = (l: V1Lease): number => new Date(l.metadata?.creationTimestamp ?? 0).getTime();
  if (t(a) !== t(b)) return t(a) < t(b);
  return (a.metadata?.name ?? '') < (b.metadata?.name ?? '');
}

/** Whether `text` is one of the /maskSize blocks of `range` that freeBlock hands out. */
export function isBlockOf(range: Cidr, maskSize: number, text: string): boolean {
  try {
    // parseCidr refuses host bits, so a block of this size inside the range is aligned in it.
    const block = parseCidr(text, 'node range');
    return block.prefix === maskSize && cidrWithin(block, range);
  } catch {
    return false;
  }
}

/** The lowest /`maskSize` block of `range` not in `taken`; undefined when every one is. */
export function freeBlock(
  range: Cidr,
  maskSize: number,
  taken: ReadonlySet<string>,
): string | undefined {
  const size = 2 ** (32 - maskSize);
  for (let base = range.base; base + size <= range.base + range.size; base += size) {
    const text = `${formatIPv4(base)}/${maskSize}`;
    if (!taken.has(text)) return text;
  }
  return undefined;
}
