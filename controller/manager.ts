/**
 * The controller manager: `conductor up`. Wires the directory source into the caches, the caches
 * into three controllers (Image, Container, Service) through their work queues, the reconcilers
 * into the runtime core, and serves /metrics, /healthz and /readyz. Stopping it leaves every
 * container running; a new manager adopts them and converges on whatever changed meanwhile.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';

import { KIND_NAMES, type Kind } from './api/kinds.js';
import type { ConductorObject, Container, Image, Service } from './api/types.generated.js';
import { ObjectCache, objectKey } from './cache/cache.js';
import { enqueueForObject, enqueueFromMap } from './cache/handlers.js';
import {
  ContainerReconciler,
  OWNER_ANNOTATION,
  type RestartBackoff,
} from './controllers/container.js';
import { StatusStore, type Caches, type ReconcileContext } from './controllers/context.js';
import { ImageReconciler } from './controllers/image.js';
import { ServiceReconciler } from './controllers/service.js';
import { ConductorMetrics } from './metrics/registry.js';
import { DEFAULT_METRICS_ADDR, MetricsServer, type HostPort } from './metrics/server.js';
import { Controller } from './reconcile/controller.js';
import { DirectorySource } from './source/directory.js';
import { formatManifestError, identityKey, type ManifestError } from './source/manifests.js';
import { StateStore, type FileOutcome } from './store/state-store.js';
import { validateManifest } from './validation/index.js';
import { ContainerRuntime, type ContainerRuntimeOptions } from '../runtime-core/src/containers.js';
import {
  ImageBuilder,
  isOrphanedBuild,
  type BuilderOptions,
} from '../runtime-core/src/images/builder.js';
import { baseImageName } from '../runtime-core/src/images/reference.js';
import { silentLogger, type Logger } from '../runtime-core/src/logger.js';
import { procStartTime } from '../runtime-core/src/files.js';
import {
  claimInstallation,
  installationOf,
  recordInstallation,
} from '../runtime-core/src/installation.js';
import { DisposableStore } from './reconcile/lifecycle.js';

export const DEFAULT_WATCH_DIR = '/etc/conductor/manifests';
export const DEFAULT_STATE_DIR = '/var/lib/conductor';
export const VERSION = '0.1.0';

export interface RunControllerOptions {
  watchDir?: string;
  stateDir?: string;
  metricsAddr?: string;
  logger?: Logger;
  /** Workers per controller (default: Image 2, Container 4, Service 1). */
  concurrency?: Partial<Record<Kind, number>>;
  /** Passed to the runtime facade (runtime and shim paths, log sizes). */
  runtime?: Omit<ContainerRuntimeOptions, 'stateDir' | 'logger'>;
  /** Quiet time before a changed manifest is read (DirectorySource). */
  settleMs?: number;
  /** CrashLoopBackOff timing; the kubelet's (10 s doubling to 5 min, reset after 10 min). */
  restartBackoff?: RestartBackoff;
  /** Image builds: a shared cache for debootstrap bases, distribution mirrors. */
  images?: Pick<BuilderOptions, 'baseCacheDir' | 'mirrors' | 'buildIdPrefix'>;
  /**
   * The installation's name, which scopes its host-level names (cgroups under /<name>): default
   * the one recorded in the state dir, else `conductor` for the default state dir and
   * `cnd-<hash>` for another (runtime-core/src/installation.ts).
   */
  installation?: string;
}

export interface RunningController {
  metricsAddress: HostPort;
  runtime: ContainerRuntime;
  stop(): Promise<void>;
}

export async function runController(opts: RunControllerOptions = {}): Promise<RunningController> {
  // What startup has made so far; released if it fails half-way.
  const owned = new DisposableStore();
  try {
    return await startController(opts, owned);
  } catch (err) {
    await owned.dispose().catch(() => undefined);
    throw err;
  }
}

async function startController(
  opts: RunControllerOptions,
  owned: DisposableStore,
): Promise<RunningController> {
  const watchDir = resolve(opts.watchDir ?? DEFAULT_WATCH_DIR);
  const stateDir = resolve(opts.stateDir ?? DEFAULT_STATE_DIR);
  const log = opts.logger ?? silentLogger;
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  await mkdir(watchDir, { recursive: true, mode: 0o755 });
  const store = new StateStore(stateDir);
  const other = await store.readControllerInfo();
  if (other && other.pid !== process.pid && procStartTime(other.pid) === other.pidStartTime) {
    throw new Error(`another controller (pid ${other.pid}) is running with state dir ${stateDir}`);
  }
  // One installation per name on this host: a second state dir may not share its cgroups.
  const installation = installationOf(stateDir, opts.installation);
  owned.defer(await claimInstallation(installation, stateDir));

  const metrics = new ConductorMetrics();
  const server = new MetricsServer({ metrics, addr: opts.metricsAddr ?? DEFAULT_METRICS_ADDR });
  const metricsAddress = await server.start();
  owned.defer(() => server.stop());
  const runtime = new ContainerRuntime({ ...opts.runtime, stateDir, installation, logger: log });
  await recordInstallation(stateDir, installation, (await runtime.list()).length);
  // Off the first container's path: compiled while the rest starts up (never fails).
  const runtimePrepared = runtime.prepare();
  const images = new ImageBuilder({ ...opts.images, stateDir, runtime });

  const caches: Caches = {
    Image: new ObjectCache<Image>('Image'),
    Container: new ObjectCache<Container>('Container'),
    Service: new ObjectCache<Service>('Service'),
  };
  const status = new StatusStore(caches, store);
  // What a previous run persisted: status survives restarts, and an object deleted while the
  // controller was down is still known, so its containers are removed.
  const persisted: { kind: Kind; key: string }[] = [];
  // Defined again, they keep uid, creationTimestamp and generation (the source decides).
  const previous = new Map<string, object>();
  for (const kind of KIND_NAMES) {
    for (const obj of await store.readObjects(kind)) {
      const key = objectKey(obj);
      status.restore(kind, key, obj.status);
      persisted.push({ kind, key });
      previous.set(
        identityKey({ kind, namespace: obj.metadata.namespace, name: obj.metadata.name }),
        obj,
      );
    }
  }

  const files = new Map<string, string>();
  const ctx: ReconcileContext = {
    caches,
    status,
    store,
    runtime,
    images,
    stateDir,
    fileOf: (kind, key) => files.get(`${kind}/${key}`),
    logger: log,
    now: () => new Date(),
  };
  const c = opts.concurrency ?? {};
  const imageReconciler = new ImageReconciler(ctx, (key) => controllers.Image.queue.add(key));
  const controllers = {
    Image: new Controller({
      name: 'image',
      reconciler: imageReconciler,
      concurrency: c.Image ?? 2,
      queueMetrics: metrics.queueMetricsProvider,
      reconcileMetrics: metrics.reconcileMetrics,
      logger: log,
    }),
    Container: undefined as unknown as Controller,
    Service: new Controller({
      name: 'service',
      reconciler: new ServiceReconciler(ctx),
      concurrency: c.Service ?? 1,
      queueMetrics: metrics.queueMetricsProvider,
      reconcileMetrics: metrics.reconcileMetrics,
      logger: log,
    }),
  };
  const containerReconciler = new ContainerReconciler(
    ctx,
    (key) => controllers.Container.queue.add(key),
    opts.restartBackoff,
  );
  controllers.Container = new Controller({
    name: 'container',
    reconciler: containerReconciler,
    concurrency: c.Container ?? 4,
    queueMetrics: metrics.queueMetricsProvider,
    reconcileMetrics: metrics.reconcileMetrics,
    logger: log,
  });

  // Dependents: a Container waits for its Image; a Service lists matching Containers.
  const containersUsing = (img: { metadata: { namespace: string; name: string } }): string[] =>
    caches.Container.list(img.metadata.namespace)
      .filter((ct) => ct.spec.image === img.metadata.name)
      .map((ct) => objectKey(ct));
  const imagesBuiltOn = (img: { metadata: { namespace: string; name: string } }): string[] =>
    caches.Image.list(img.metadata.namespace)
      .filter((i) => baseImageName(i.spec.from) === img.metadata.name)
      .map((i) => objectKey(i));
  const servicesIn = (namespace: string): string[] =>
    caches.Service.list(namespace).map((s) => objectKey(s));
  controllers.Image.watch(enqueueForObject(caches.Image, controllers.Image.queue));
  controllers.Container.watch(enqueueForObject(caches.Container, controllers.Container.queue));
  controllers.Container.watch(
    enqueueFromMap(caches.Image, controllers.Container.queue, containersUsing),
  );
  controllers.Service.watch(enqueueForObject(caches.Service, controllers.Service.queue));
  controllers.Service.watch(
    enqueueFromMap(caches.Container, controllers.Service.queue, (ct) =>
      servicesIn(ct.metadata.namespace),
    ),
  );
  // Status is not in the cache: its changes requeue dependents directly.
  status.onChange = (kind, key) => {
    const [namespace = 'default', name = key] = key.split('/');
    if (kind === 'Image') {
      for (const k of containersUsing({ metadata: { namespace, name } }))
        controllers.Container.queue.add(k);
      for (const k of imagesBuiltOn({ metadata: { namespace, name } }))
        controllers.Image.queue.add(k);
    }
    if (kind === 'Container')
      for (const k of servicesIn(namespace)) controllers.Service.queue.add(k);
  };

  const outcomes = new Map<string, FileOutcome>();
  let sourcesWrite: NodeJS.Timeout | undefined;
  const saveSources = (): void => {
    clearTimeout(sourcesWrite);
    sourcesWrite = setTimeout(
      () => void store.writeSources(watchDir, Object.fromEntries(outcomes)),
      20,
    );
  };
  // Every file that defines objects or has errors has a conductor_manifest_errors_total
  // series, at 0 until it fails, so `increase()` and alerts see its first error; it goes with
  // the file (as a deleted container's series do).
  const outcome = (file: string): FileOutcome => {
    let o = outcomes.get(file);
    if (!o) {
      outcomes.set(file, (o = { objects: [], errors: [] }));
      metrics.manifestErrors.inc({ file }, 0);
    }
    return o;
  };
  const forgetOutcome = (file: string): void => {
    outcomes.delete(file);
    metrics.manifestErrors.remove({ file });
  };

  const source = new DirectorySource<ConductorObject>({
    dir: watchDir,
    validate: validateManifest,
    previous,
    ...(opts.settleMs !== undefined ? { settleMs: opts.settleMs } : {}),
    sink: {
      onUpsert(obj, file) {
        const key = objectKey(obj);
        files.set(`${obj.kind}/${key}`, resolve(watchDir, file));
        const o = outcome(file);
        const id = { kind: obj.kind, namespace: obj.metadata.namespace, name: obj.metadata.name };
        if (
          !o.objects.some(
            (x) => x.kind === id.kind && x.namespace === id.namespace && x.name === id.name,
          )
        )
          o.objects.push(id);
        saveSources();
        (caches[obj.kind] as ObjectCache<ConductorObject>).set(obj);
        void status.persist(obj.kind, key);
      },
      onDelete(identity, file) {
        const kind = identity.kind as Kind;
        const key = `${identity.namespace}/${identity.name}`;
        const o = outcome(file);
        o.objects = o.objects.filter(
          (x) =>
            !(
              x.kind === identity.kind &&
              x.namespace === identity.namespace &&
              x.name === identity.name
            ),
        );
        if (o.objects.length === 0 && o.errors.length === 0) forgetOutcome(file);
        saveSources();
        (caches[kind] as ObjectCache<ConductorObject>).delete(key);
        files.delete(`${kind}/${key}`);
      },
      onError(file, errors: ManifestError[]) {
        const o = outcome(file);
        metrics.manifestErrors.inc({ file });
        o.errors = errors.map(({ line, column, path, message }) => ({
          ...(line !== undefined ? { line } : {}),
          ...(column !== undefined ? { column } : {}),
          ...(path !== undefined ? { path } : {}),
          message,
        }));
        saveSources();
        for (const e of errors) log.warn(`manifest rejected: ${formatManifestError(e)}`, { file });
      },
      onErrorResolved(file) {
        const o = outcomes.get(file);
        if (o) {
          o.errors = [];
          if (o.objects.length === 0) forgetOutcome(file);
        }
        saveSources();
      },
      onWatchError(err) {
        log.error('watching the manifests failed', { err: err.message });
      },
    },
  });

  // Adopt what is running: no restart, no duplicate; exits are reported from now on.
  for (const info of await runtime.adopt()) {
    const owner = info.annotations?.[OWNER_ANNOTATION]?.split('/');
    if (owner?.[0] === 'Build') {
      // A build container whose build died with its process: its step never became a layer.
      // One of a live `conductor build` is that process's.
      if (isOrphanedBuild(info.annotations)) await runtime.remove(info.id, { force: true });
      continue;
    }
    if (owner?.[0] !== 'Container' || owner.length !== 3) continue;
    const key = `${owner[1]}/${owner[2]}`;
    if (info.shimAlive) containerReconciler.watch(key, info.id);
    controllers.Container.queue.add(key);
  }
  // What a killed controller's builds left (after their build containers, above): partial
  // layers, images mounted for copy steps.
  for (const path of await images.store.removeStale()) log.info('removed a dead build', { path });
  await source.start();
  await source.synced();
  // Objects deleted while we were down: reconciling their keys removes what they owned.
  for (const { kind, key } of persisted) controllers[kind].queue.add(key);
  for (const ctl of Object.values(controllers)) ctl.start();
  server.markReady();
  await store.writeControllerInfo({
    pid: process.pid,
    pidStartTime: procStartTime(process.pid) ?? '',
    watchDir,
    metricsAddr: `${metricsAddress.host}:${metricsAddress.port}`,
    startedAt: new Date().toISOString(),
    version: VERSION,
  });
  await runtimePrepared;
  log.info('controller started', { watchDir, stateDir, metrics: metricsAddress });

  let stopping: Promise<void> | undefined;
  return {
    metricsAddress,
    runtime,
    stop() {
      stopping ??= (async () => {
        server.markNotReady();
        await source.stop();
        // A build in progress may take minutes (apt-get): stop it, the next start redoes it.
        await images.abort();
        await Promise.all(Object.values(controllers).map((ctl) => ctl.stop()));
        await imageReconciler.close();
        containerReconciler.prober.stopAll();
        clearTimeout(sourcesWrite);
        await store.writeSources(watchDir, Object.fromEntries(outcomes));
        await store.removeControllerInfo();
        await store.flush();
        runtime.removeAllListeners();
        await owned.dispose();
        log.info('controller stopped; containers keep running');
      })();
      return stopping;
    },
  };
}
