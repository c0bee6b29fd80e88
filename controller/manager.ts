/**
 * The controller manager: `conductor up`. Wires a source (the manifest directory, or a
 * Kubernetes API server given a kubeconfig, as a Client) into three controllers (Image,
 * Container, Service) through their work queues, the reconcilers into the runtime core, and
 * serves /metrics, /healthz and /readyz. Everything it starts is registered with one
 * DisposableStore as it is made, so stop() — and a start that fails half-way — releases all of
 * it, newest first. Stopping leaves every container running; a new manager
 * adopts them and converges on whatever changed meanwhile.
 */
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';

import type { Kind } from './api/kinds.js';
import type { ObjectMetaLike } from './cache/cache.js';
import { objectKey } from './cache/cache.js';
import { enqueueForObject, enqueueFromMap, specChanged } from './cache/handlers.js';
import { observeEvents, type SourceClient } from './client/client.js';
import type { Container } from './api/types.generated.js';
import { ContainerReconciler, OWNER_ANNOTATION } from './controllers/container.js';
import { markNodeLost, markUnschedulable, NODE_LOST_REASON } from './controllers/node-lifecycle.js';
import type { ReconcileContext } from './controllers/context.js';
import { ImageReconciler } from './controllers/image.js';
import { NodeImages } from './controllers/node-images.js';
import type { RestartBackoff } from './controllers/restart-policy.js';
import { allDnsGroups } from './controllers/dns-names.js';
import { serviceRule, ServiceReconciler } from './controllers/service.js';
import { scrapeContainers } from './metrics/containers.js';
import { registerObjectMetrics } from './metrics/objects.js';
import { ConductorMetrics } from './metrics/registry.js';
import { DEFAULT_METRICS_ADDR, MetricsServer, type HostPort } from './metrics/server.js';
import { Controller } from './reconcile/controller.js';
import type { Reconciler } from './reconcile/result.js';
import { DisposableStore } from './reconcile/lifecycle.js';
import { DirectoryClient } from './source/directory-client.js';
import type { InClusterConfig, KubernetesClient } from './source/kubernetes-client.js';
import type { KnownNode, LeaseTiming, NodeLease } from './source/node-lease.js';
import { StateStore } from './store/state-store.js';
import { validateManifest } from './validation/index.js';
import {
  baseImageName,
  cidrWithin,
  DEFAULT_CONTAINER_CIDR,
  defaultRouteAddress,
  parseCidr,
  procStartTime,
  recordedNetwork,
  RuntimeCore,
  silentLogger,
  type Logger,
  type RuntimeCoreOptions,
  type ServiceRule,
} from '../runtime-core/src/index.js';

export const DEFAULT_WATCH_DIR = '/etc/conductor/manifests';
export const DEFAULT_STATE_DIR = '/var/lib/conductor';
export const VERSION = '0.1.0';

/** controller-runtime reconciles everything every SyncPeriod; ours is shorter than its 10 h. */
export const DEFAULT_RESYNC_PERIOD_MS = 10 * 60 * 1000;

/**
 * /healthz fails when a worker has been in one reconcile this long without progress (the
 * kubelet's PLEG threshold is 3 minutes; a container's stop may take its grace period, and a
 * build reports progress as it goes).
 */
export const DEFAULT_STUCK_AFTER_MS = 5 * 60 * 1000;

export interface RunControllerOptions {
  watchDir?: string;
  stateDir?: string;
  metricsAddr?: string;
  logger?: Logger;
  /** Workers per controller (default: Image 2, Container 4, Service 1). */
  concurrency?: Partial<Record<Kind, number>>;
  /** Passed to the runtime facade (runtime and shim paths, log sizes). */
  runtime?: RuntimeCoreOptions['containers'];
  /** Quiet time before a changed manifest is read (DirectorySource). */
  settleMs?: number;
  /** CrashLoopBackOff timing; the kubelet's (10 s doubling to 5 min, reset after 10 min). */
  restartBackoff?: RestartBackoff;
  /**
   * Every object is reconciled again this often even when nothing changed (controller-runtime's
   * SyncPeriod): what a missed event or a change on the host behind the controller's back left
   * is mended then. Default 10 minutes; 0 turns it off.
   */
  resyncPeriodMs?: number;
  /** /healthz fails when a reconcile runs this long without progress. Default 5 minutes. */
  stuckAfterMs?: number;
  /** Image builds: a shared cache for debootstrap bases, distribution mirrors. */
  images?: RuntimeCoreOptions['images'];
  /**
   * The installation's name, which scopes its host-level names (cgroups under /<name>): default
   * the one recorded in the state dir, else `conductor` for the default state dir and
   * `cnd-<hash>` for another (runtime-core/src/installation.ts).
   */
  installation?: string;
  /** The container network: ranges, an operator's CNI conflist directory, DNS. */
  network?: RuntimeCoreOptions['network'];
  /**
   * Kubernetes mode: the objects come from the API server of this kubeconfig (its current
   * context) instead of the watch directory, which is then not used.
   */
  kubeconfig?: string;
  /** Kubernetes mode with the Pod's own configuration (the DaemonSet's `--in-cluster`). */
  inCluster?: InClusterConfig;
  /** Kubernetes mode: this agent's node name (default the hostname). */
  nodeName?: string;
  /** Kubernetes mode: the node Lease's duration and renewal (default 40 s, every 10 s). */
  lease?: LeaseTiming;
  /**
   * Kubernetes mode: the address other nodes reach this node's containers through (default:
   * the source address of the host's default route).
   */
  nodeIp?: string;
  /** Kubernetes mode: what the relative paths of Images from the API server resolve against. */
  buildContext?: string;
  /** Kubernetes mode: this node's labels, which unbound Containers' nodeSelector must match. */
  nodeLabels?: Readonly<Record<string, string>>;
  /** Kubernetes mode: the size of each node's part of the container range (default /24). */
  nodeCidrMaskSize?: number;
}

export interface RunningController {
  metricsAddress: HostPort;
  runtime: RuntimeCore;
  stop(): Promise<void>;
}

export async function runController(opts: RunControllerOptions = {}): Promise<RunningController> {
  // Everything the controller makes, released newest first by stop() or a failed start.
  const owned = new DisposableStore();
  try {
    return await startController(opts, owned);
  } catch (err) {
    await owned.dispose().catch(() => undefined);
    throw err;
  }
}

/** Metadata of an object a handler maps: every cached kind has namespace and name. */
type Named = { metadata: ObjectMetaLike };
const namespaceOf = (o: Named): string => o.metadata.namespace ?? 'default';

async function startController(
  opts: RunControllerOptions,
  owned: DisposableStore,
): Promise<RunningController> {
  const watchDir = resolve(opts.watchDir ?? DEFAULT_WATCH_DIR);
  const stateDir = resolve(opts.stateDir ?? DEFAULT_STATE_DIR);
  const log = opts.logger ?? silentLogger;
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  if (opts.kubeconfig === undefined && opts.inCluster === undefined)
    await mkdir(watchDir, { recursive: true, mode: 0o755 });
  const store = new StateStore(stateDir);
  const other = await store.readControllerInfo();
  if (other && other.pid !== process.pid && procStartTime(other.pid) === other.pidStartTime) {
    throw new Error(`another controller (pid ${other.pid}) is running with state dir ${stateDir}`);
  }
  // Released last: what the CLI reads says no controller runs here once everything is done.
  owned.defer(async () => {
    await store.removeControllerInfo();
    await store.flush();
  });

  const metrics = new ConductorMetrics();
  const server = new MetricsServer({ metrics, addr: opts.metricsAddr ?? DEFAULT_METRICS_ADDR });
  const metricsAddress = await server.start();
  owned.defer(() => server.stop());
  const kubernetes =
    opts.kubeconfig !== undefined || opts.inCluster !== undefined
      ? await openKubernetesClient(opts, log)
      : undefined;
  // Kubernetes mode: this node's Lease, and through it its part of the container range (the
  // other nodes' parts are theirs) before the network is opened with it.
  const nodeLease = kubernetes ? await claimNodeRange(kubernetes, opts, stateDir, log) : undefined;
  const network = nodeLease ? { ...opts.network, nodeCidr: nodeLease.cidr } : opts.network;

  // One installation per name on this host: the core claims it while it is open.
  const runtime = await RuntimeCore.open({
    stateDir,
    ...(opts.installation !== undefined ? { installation: opts.installation } : {}),
    logger: log,
    ...(opts.runtime ? { containers: opts.runtime } : {}),
    ...(opts.images ? { images: opts.images } : {}),
    ...(network ? { network } : {}),
  });
  owned.defer(() => runtime.close());
  // Off the first container's path: compiled while the rest starts up (never fails).
  const runtimePrepared = runtime.prepare();
  const client: SourceClient =
    kubernetes ??
    (await DirectoryClient.open({
      watchDir,
      store,
      validate: validateManifest,
      manifestErrors: metrics.manifestErrors,
      logger: log,
      ...(opts.settleMs !== undefined ? { settleMs: opts.settleMs } : {}),
    }));
  owned.defer(() => client.stop());
  const { caches } = client;
  // Reconcilers (and their probes) record events through this one client, so every event of
  // either source is counted once.
  // This node's build of an Image changed without its status changing (another node's status
  // stands): its dependents look again. Set once the controllers exist.
  let builtHere: (key: string) => void = () => undefined;
  // Kubernetes mode: every node and its labels, as the last check of the Leases saw them.
  let knownNodes: readonly KnownNode[] | undefined;
  const ctx: ReconcileContext = {
    client: observeEvents(client, (kind, type, reason) =>
      metrics.events.inc({ kind, type, reason }),
    ),
    runtime,
    images: new NodeImages((key) => builtHere(key)),
    logger: log,
    now: () => new Date(),
    metrics: { images: metrics.images },
    nodes: () => knownNodes,
  };
  // Read at every scrape from the cache and the containers' cgroups.
  registerObjectMetrics(metrics.registry, {
    containers: () => caches.Container.list(),
    images: () => caches.Image.list(),
    services: () => caches.Service.list(),
  });
  metrics.addCollector(() =>
    scrapeContainers(
      () => caches.Container.list(),
      runtime,
      (err) => log.error('reading container statistics failed', { error: String(err) }),
    ),
  );

  const c = opts.concurrency ?? {};
  const controller = (name: string, reconciler: Reconciler, concurrency: number): Controller =>
    new Controller({
      name,
      reconciler,
      concurrency,
      queueMetrics: metrics.queueMetricsProvider,
      reconcileMetrics: metrics.reconcileMetrics,
      logger: log,
    });
  const imageReconciler = new ImageReconciler(
    ctx,
    (key) => controllers.Image.queue.add(key),
    (key) => controllers.Image.progress(key),
  );
  const containerReconciler = new ContainerReconciler(
    ctx,
    (key) => controllers.Container.queue.add(key),
    opts.restartBackoff,
  );
  const controllers: Record<Kind, Controller> = {
    Image: controller('image', imageReconciler, c.Image ?? 2),
    Container: controller('container', containerReconciler, c.Container ?? 4),
    Service: controller('service', new ServiceReconciler(ctx), c.Service ?? 1),
  };
  // Released in this order at stop (newest first): the source stops feeding, builds are
  // aborted, the controllers drain, then the reconcilers let go of watches and probes.
  owned.defer(() => containerReconciler.close());
  owned.defer(() => imageReconciler.close());
  for (const ctl of Object.values(controllers)) owned.defer(() => ctl.stop());
  owned.defer(() => runtime.abortBuilds());

  // One handler path: status travels with the object, so a status change is a cache update
  // like a spec change. Each kind reconciles on its own spec changes; dependents on any change
  // of what they depend on — a Container waits for its Image, an Image for the one it is built
  // on, a Service lists matching Containers.
  const containersUsing = (img: Named): string[] =>
    caches.Container.list(namespaceOf(img))
      .filter((ct) => ct.spec.image === img.metadata.name)
      .map((ct) => objectKey(ct));
  const imagesBuiltOn = (img: Named): string[] =>
    caches.Image.list(namespaceOf(img))
      .filter((i) => baseImageName(i.spec.from) === img.metadata.name)
      .map((i) => objectKey(i));
  const servicesIn = (o: Named): string[] =>
    caches.Service.list(namespaceOf(o)).map((s) => objectKey(s));
  controllers.Image.watch(enqueueForObject(caches.Image, controllers.Image.queue, specChanged));
  controllers.Container.watch(
    enqueueForObject(
      caches.Container,
      controllers.Container.queue,
      (old, now) =>
        // Also when another agent marked it Unknown (its node was thought lost): its own agent,
        // back, writes what it knows.
        specChanged(old, now) || (now as Container).status?.reason === NODE_LOST_REASON,
    ),
  );
  controllers.Service.watch(
    enqueueForObject(caches.Service, controllers.Service.queue, specChanged),
  );
  controllers.Container.watch(
    enqueueFromMap(caches.Image, controllers.Container.queue, containersUsing),
  );
  controllers.Image.watch(enqueueFromMap(caches.Image, controllers.Image.queue, imagesBuiltOn));
  builtHere = (key) => {
    const img = caches.Image.getByKey(key);
    if (!img) return;
    for (const k of containersUsing(img)) controllers.Container.queue.add(k);
    for (const k of imagesBuiltOn(img)) controllers.Image.queue.add(k);
  };
  controllers.Service.watch(
    enqueueFromMap(caches.Container, controllers.Service.queue, servicesIn),
  );

  // Adopt what is running: no restart, no duplicate; exits are reported from now on. What a
  // killed controller's builds left goes (its build containers, partial layers, mounts).
  const adopted = await runtime.adopt();
  for (const removed of await runtime.removeStaleBuilds(adopted))
    log.info('removed a dead build', { path: removed });
  for (const info of adopted) {
    const owner = info.annotations?.[OWNER_ANNOTATION]?.split('/');
    if (owner?.[0] !== 'Container' || owner.length !== 3) continue;
    const key = `${owner[1]}/${owner[2]}`;
    if (info.shimAlive) containerReconciler.watch(key, info.id);
    controllers.Container.queue.add(key);
  }
  await client.start();
  await client.synced();
  // The service table and DNS brought to what the cache says (a previous process's stale rules
  // and records removed, missing ones added) before any reconcile changes them one by one.
  await resyncNetwork(client, runtime);
  // Objects deleted while we were down: reconciling their keys removes what they owned.
  for (const { kind, key } of client.leftoverKeys()) controllers[kind].queue.add(key);
  for (const ctl of Object.values(controllers)) ctl.start();
  const resyncMs = opts.resyncPeriodMs ?? DEFAULT_RESYNC_PERIOD_MS;
  if (resyncMs > 0) {
    const resync = setInterval(() => {
      for (const kind of Object.keys(controllers) as Kind[])
        for (const o of client.list(kind)) controllers[kind].queue.add(objectKey(o));
    }, resyncMs);
    resync.unref();
    owned.defer(() => clearInterval(resync));
  }
  // /healthz: the source feeds the cache, and no worker is stuck in one reconcile.
  server.addHealthCheck('source', () => client.health());
  const stuckAfterMs = opts.stuckAfterMs ?? DEFAULT_STUCK_AFTER_MS;
  for (const ctl of Object.values(controllers))
    server.addHealthCheck(`controller-${ctl.name}`, () => {
      const stuck = ctl.stuck(stuckAfterMs);
      return stuck.length ? stuck.join('; ') : undefined;
    });
  // Kubernetes mode: this node's heartbeat, and the other nodes' read (a lost node's
  // Containers are marked Unknown until its agent is back).
  if (nodeLease) {
    const { lease } = nodeLease;
    lease.on({
      lost: (node, since) => markNodeLost(ctx, node, since),
      back: () => undefined,
      // Unbound Containers no node's labels match: Unschedulable, said by whoever sees it.
      nodes: async (nodes) => {
        knownNodes = nodes;
        for (const c of client.list('Container')) await markUnschedulable(ctx, c, nodes);
      },
      // Routes to the other nodes' parts of this cluster range; nodes on this host (the same
      // address) reach each other's bridges directly.
      peers: (ranges) =>
        runtime
          .setPeerRoutes(
            ranges
              .filter((r) => r.ip !== nodeLease.ip && nodeLease.cluster.contains(r.cidr))
              .map((r) => ({ cidr: r.cidr, via: r.ip })),
          )
          .catch((err: unknown) =>
            log.error('routing to the other nodes failed', { error: String(err) }),
          ),
    });
    await lease.start();
    owned.defer(() => lease.stop());
  }
  server.markReady();
  // Disposed first: /readyz fails as soon as stopping begins.
  owned.defer(() => server.markNotReady());
  await store.writeControllerInfo({
    pid: process.pid,
    pidStartTime: procStartTime(process.pid) ?? '',
    watchDir,
    metricsAddr: `${metricsAddress.host}:${metricsAddress.port}`,
    startedAt: new Date().toISOString(),
    version: VERSION,
  });
  await runtimePrepared;
  log.info('controller started', {
    ...(opts.kubeconfig !== undefined
      ? { kubeconfig: opts.kubeconfig }
      : opts.inCluster !== undefined
        ? { inCluster: true }
        : { watchDir }),
    stateDir,
    metrics: metricsAddress,
  });

  let stopping: Promise<void> | undefined;
  return {
    metricsAddress,
    runtime,
    stop() {
      stopping ??= (async () => {
        await owned.dispose();
        log.info('controller stopped; containers keep running');
      })();
      return stopping;
    },
  };
}

/**
 * This node's Lease (not renewed yet: start() does that) and the part of the cluster's container
 * range it holds, with the address the other nodes reach it through (--node-ip, else the source
 * address of the host's default route).
 */
async function claimNodeRange(
  client: KubernetesClient,
  opts: RunControllerOptions,
  stateDir: string,
  log: Logger,
): Promise<{
  lease: NodeLease;
  cidr: string;
  ip: string;
  cluster: { contains(cidr: string): boolean };
}> {
  const { NodeLease } = await import('./source/node-lease.js');
  const recorded = await recordedNetwork(stateDir);
  const cluster = parseCidr(
    opts.network?.containerCidr ?? recorded?.containerCidr ?? DEFAULT_CONTAINER_CIDR,
    '--container-cidr',
  );
  // kube-controller-manager's --node-cidr-mask-size is 24; a test's small range gets quarters.
  const mask = opts.nodeCidrMaskSize ?? Math.max(24, Math.min(30, cluster.prefix + 2));
  if (mask < cluster.prefix || mask > 30)
    throw new Error(
      `node ranges of /${mask} do not fit in the container range ${cluster.text} (at most /30)`,
    );
  const ip = opts.nodeIp ?? (await defaultRouteAddress());
  const lease = new NodeLease({
    kc: client.kubeConfig,
    nodeName: client.nodeName,
    ...(opts.nodeLabels !== undefined ? { labels: opts.nodeLabels } : {}),
    ...(opts.lease ? { timing: opts.lease } : {}),
    log,
  });
  const cidr = await lease.claim(cluster, mask, ip);
  log.info('this node holds a part of the container range', { cidr, nodeIp: ip });
  const contains = (text: string): boolean => {
    try {
      return cidrWithin(parseCidr(text, 'node range'), cluster);
    } catch {
      return false;
    }
  };
  return { lease, cidr, ip, cluster: { contains } };
}

/** Loaded only in Kubernetes mode: @kubernetes/client-node takes about 0.5 s to import. */
async function openKubernetesClient(
  opts: Pick<
    RunControllerOptions,
    'kubeconfig' | 'inCluster' | 'nodeName' | 'buildContext' | 'nodeLabels'
  >,
  logger: Logger,
): Promise<KubernetesClient> {
  const { KubernetesClient } = await import('./source/kubernetes-client.js');
  return KubernetesClient.open({
    ...(opts.kubeconfig !== undefined ? { kubeconfig: opts.kubeconfig } : {}),
    ...(opts.inCluster !== undefined ? { inCluster: opts.inCluster } : {}),
    nodeName: opts.nodeName ?? hostname().toLowerCase(),
    ...(opts.buildContext !== undefined ? { buildContext: opts.buildContext } : {}),
    ...(opts.nodeLabels !== undefined ? { nodeLabels: opts.nodeLabels } : {}),
    logger,
  });
}

/** The whole service table and DNS from the cache: Services with a ClusterIP, named Containers. */
async function resyncNetwork(client: SourceClient, runtime: RuntimeCore): Promise<void> {
  const net = await runtime.networkInfo();
  const rules: ServiceRule[] = [];
  for (const svc of client.list('Service')) {
    const ip = svc.status?.clusterIP;
    if (ip) rules.push(serviceRule(client, svc, ip).rule);
  }
  await runtime.syncServices(rules);
  await runtime.syncDns(allDnsGroups(client, net.domain));
}
