/**
 * The runtime core's one entry point for the controller and the CLI (eslint enforces it): the
 * `RuntimeCore` facade and the types it speaks. Containers, images, volumes, probes and stats go
 * through it; host paths are its own layout (StateLayout), never its callers'. Networking plugs
 * is NodeNetwork's: a bridge-mode container is attached in run() and released in remove(), and
 * Services and DNS records go through the same core.
 *
 * The facade composes the parts that do the work — ContainerRuntime (shim, OCI runtime,
 * overlayfs), ImageBuilder (layers, skopeo, debootstrap), ProbeRunner (conductor-probe) — and
 * owns what they leave pending: exit waits are disposables, and close() cancels those still
 * registered, so a process that stops using the core has nothing left keeping it alive.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';

import {
  ContainerNotFoundError,
  ContainerRuntime,
  type ContainerInfo,
  type ContainerRuntimeOptions,
  type CreatedContainer,
  type ExecOptions,
  type ExecResult,
  type LogEntry,
  type ContainerStats,
  type StatsRequest,
} from './containers.js';
import {
  ImageBuilder,
  isOrphanedBuild,
  type BuilderOptions,
  type BuildRequest,
  type BuiltImage,
} from './images/builder.js';
import type { ResolvedUser } from './images/users.js';
import { claimInstallation, installationOf, recordInstallation } from './installation.js';
import { silentLogger, type Logger } from './logger.js';
import type { CgroupStats } from './native.js';
import {
  NodeNetwork,
  type Attachment,
  type NetworkOptions,
  type NodeNetworkInfo,
  type PeerRoute,
} from './network/network.js';
import type { DnsRecord } from './network/dns.js';
import type { PortMapping } from './network/host-ports.js';
import type { ServiceRule } from './network/service-proxy.js';
import type { ContainerMount, RunSpec } from './oci-config.js';
import { ProbeRunner, type ProbeOutcome, type ProbeRequest } from './probes.js';

export {
  ContainerError,
  ContainerNotFoundError,
  OWNER_ANNOTATION,
  type ContainerInfo,
  type ContainerState,
  type CreatedContainer,
  type ExecOptions,
  type ExecResult,
  type LogEntry,
  type ContainerStats,
  type StatsRequest,
} from './containers.js';
export {
  BuildError,
  BuildInterruptedError,
  DependencyNotReadyError,
  type BuildProgress,
  type BuildRequest,
  type BuiltImage,
  type BuiltLayer,
  type ImageStep,
} from './images/builder.js';
export { DEFAULT_PATH, type ImageConfig } from './images/config.js';
export {
  ARCHIVE_FORMATS,
  archiveReference,
  exportImage,
  ExportError,
  ExportInterruptedError,
  type ArchiveFormat,
  type ExportedImage,
  type ExportProgress,
  type ExportRequest,
} from './images/export.js';
export { alwaysPulled, baseImageName, parseSource } from './images/reference.js';
export { LayerStore, pruneLayers } from './images/store.js';
export { OciCache, pruneOciCache } from './images/skopeo.js';
export type { ResolvedUser } from './images/users.js';
export { INSTALLATION_PATTERN } from './installation.js';
export { silentLogger, type LogFields, type Logger } from './logger.js';
export type { CgroupStats, InterfaceStats } from './native.js';
export { InvalidSpecError, type ContainerMount, type RunSpec } from './oci-config.js';
export type { ProbeAction, ProbeOutcome, ProbeRequest } from './probes.js';
export { HostPortConflictError, type PortMapping, type Protocol } from './network/host-ports.js';
export {
  DEFAULT_CLUSTER_DOMAIN,
  DEFAULT_CONTAINER_CIDR,
  DEFAULT_SERVICE_CIDR,
  NetworkError,
  defaultRouteAddress,
  recordedNetwork,
  type Attachment,
  type NetworkOptions,
  type NodeNetworkInfo,
  type PeerRoute,
} from './network/network.js';
export type { ServiceEndpointRule, ServicePortRule, ServiceRule } from './network/service-proxy.js';
export type { DnsRecord } from './network/dns.js';
export {
  cidrContains,
  cidrWithin,
  formatIPv4,
  isIPv4,
  parseCidr,
  parseIPv4,
  type Cidr,
} from './network/ipv4.js';
export { StateLayout } from './paths.js';
export { containerIdFor, CONTAINER_ID_PATTERN, isValidContainerId } from './container-id.js';
export { errCode, procStartTime, readJson, writeFileAtomic } from './files.js';

/** A registration to undo: an exit watch, a claim. */
export interface Disposable {
  dispose(): void;
}

export interface RuntimeCoreOptions {
  stateDir: string;
  /**
   * The installation's name, which scopes its host-level names (installation.ts). Default: the
   * one recorded in the state dir, else the default for its path.
   */
  installation?: string;
  logger?: Logger;
  /** Runtime and shim paths, log sizes, start timeout (ContainerRuntimeOptions). */
  containers?: Omit<ContainerRuntimeOptions, 'stateDir' | 'installation' | 'logger'>;
  /** Image builds: a shared base cache, mirrors, build container names. */
  images?: Pick<BuilderOptions, 'baseCacheDir' | 'mirrors' | 'buildIdPrefix'>;
  /** The container network: ranges, an operator's conflist directory, DNS (network/network.ts). */
  network?: NetworkOptions;
}

/** An image as run() needs it: its layers' digests, base first (ImageStatus.layers). */
export interface RunImage {
  layers: readonly { digest: string }[];
}

const layerKey = (digest: string): string => digest.replace(/^sha256:/, '');

/**
 * The spec as the runtime gets it: bridge mode joins the attachment's netns by path, and the
 * attachment's /etc files are bind-mounted, where the spec does not mount something there.
 */
function withAttachment(spec: RunSpec, att: Pick<Attachment, 'netns' | 'files'>): RunSpec {
  const own = new Set((spec.mounts ?? []).map((m) => m.containerPath));
  const etc: ContainerMount[] = (
    [
      ['/etc/hosts', att.files.hosts],
      ['/etc/hostname', att.files.hostname],
      ['/etc/resolv.conf', att.files.resolvConf],
    ] as const
  )
    .filter(([path]) => !own.has(path))
    .map(([containerPath, hostPath]) => ({
      containerPath,
      type: 'bind',
      hostPath,
      readOnly: false,
      madeByCore: true,
    }));
  const mode = spec.network?.mode ?? 'none';
  const given = spec.network?.netnsPath;
  return {
    ...spec,
    network: att.netns
      ? { mode, netnsPath: att.netns }
      : { mode, ...(given !== undefined ? { netnsPath: given } : {}) },
    mounts: [...(spec.mounts ?? []), ...etc],
  };
}

export class RuntimeCore {
  readonly stateDir: string;
  readonly installation: string;
  private readonly containers: ContainerRuntime;
  private readonly images: ImageBuilder;
  private readonly probes: ProbeRunner;
  readonly network: NodeNetwork;
  private readonly log: Logger;
  private readonly exitWatches = new Set<AbortController>();
  private claim: (() => Promise<void>) | undefined;

  constructor(opts: RuntimeCoreOptions) {
    this.containers = new ContainerRuntime({
      ...opts.containers,
      stateDir: opts.stateDir,
      ...(opts.installation !== undefined ? { installation: opts.installation } : {}),
      logger: opts.logger ?? silentLogger,
    });
    this.stateDir = this.containers.layout.stateDir;
    this.installation = this.containers.installation;
    this.images = new ImageBuilder({
      ...opts.images,
      stateDir: this.stateDir,
      runtime: this.containers,
    });
    this.log = opts.logger ?? silentLogger;
    this.network = new NodeNetwork(
      this.stateDir,
      this.installation,
      opts.network,
      opts.logger ?? silentLogger,
    );
    this.probes = new ProbeRunner((id, argv) =>
      this.containers.exec(id, argv, { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
  }

  /**
   * The core a controller runs on: claims the installation's name on this host for as long as
   * the core is open (a second state dir asking for it is refused, naming the holder) and
   * records it in the state dir. close() releases the claim.
   */
  static async open(opts: RuntimeCoreOptions): Promise<RuntimeCore> {
    const installation = installationOf(opts.stateDir, opts.installation);
    const release = await claimInstallation(installation, opts.stateDir);
    try {
      const core = new RuntimeCore({ ...opts, installation });
      await recordInstallation(opts.stateDir, installation, (await core.list()).length);
      core.claim = release;
      return core;
    } catch (err) {
      await release();
      throw err;
    }
  }

  /** Compiles what the first container would otherwise wait for (never fails). */
  prepare(): Promise<void> {
    return this.containers.prepare();
  }

  // --- containers ---

  /**
   * Creates and starts a container from `spec` on `image`'s layers (an image with none runs on
   * an empty layer). `volume` mounts are made under the core's layout and kept until
   * removeVolumes(). Its network is attached — bridge: its own netns on the bridge with an
   * address and `network.ports` published (HostPortConflictError when one is held); every mode:
   * Conductor's /etc/hosts, /etc/hostname and /etc/resolv.conf — while its bundle is made, and
   * before it starts; released if the create fails.
   */
  async run(spec: RunSpec, image: RunImage): Promise<CreatedContainer> {
    // Top layer first, as overlayfs lists lowerdirs.
    const layers = image.layers.map((l) => this.images.store.path(layerKey(l.digest))).reverse();
    if (layers.length === 0) {
      const empty = this.containers.layout.emptyLayer;
      await mkdir(empty, { recursive: true, mode: 0o755 });
      layers.push(empty);
    }
    const mode = spec.network?.mode ?? 'none';
    const [namespace, name] = (spec.name ?? '').includes('/')
      ? (spec.name ?? '').split('/', 2)
      : ['default', spec.name ?? spec.id];
    // The network (namespace, /etc files, then CNI ADD) is made while the container's bundle
    // is: the runtime's `create` waits for the namespace and files, the program's start for the
    // ADD. A failed ADD is the error reported, not the create it stopped.
    const begun = this.network.begin({
      id: spec.id,
      mode,
      namespace: namespace ?? 'default',
      name: name ?? spec.id,
      hostname: spec.hostname ?? spec.id,
      portMappings: spec.network?.ports ?? [],
    });
    const ready = begun.then((pending) => pending.ready);
    const networkError = ready.then(
      () => undefined,
      (err: unknown) => err,
    );
    try {
      const created = await this.containers.create(
        withAttachment(spec, this.network.paths(spec.id, mode)),
        { layers, beforeCreate: begun, beforeStart: ready },
      );
      const ip = (await ready).ip;
      return ip ? { ...created, ip } : created;
    } catch (err) {
      // Undone once the ADD has settled (it may still be running when the create failed).
      const failed = await networkError;
      await this.network.detach(spec.id).catch(() => undefined);
      throw failed ?? err;
    }
  }

  /** The container's state; undefined when there is no such container. */
  async find(id: string): Promise<ContainerInfo | undefined> {
    try {
      return await this.inspect(id);
    } catch (err) {
      if (err instanceof ContainerNotFoundError) return undefined;
      throw err;
    }
  }

  async inspect(id: string): Promise<ContainerInfo> {
    return this.withIp(await this.containers.inspect(id));
  }

  async list(): Promise<ContainerInfo[]> {
    return Promise.all((await this.containers.list()).map((i) => this.withIp(i)));
  }

  private async withIp(info: ContainerInfo): Promise<ContainerInfo> {
    const ip = (await this.network.attachment(info.id))?.ip;
    return ip ? { ...info, ip } : info;
  }

  /**
   * The containers a previous process started, with their exits reported from now on; the
   * network attachments of containers that are gone (a process killed mid-ADD or mid-DEL) are
   * released.
   */
  async adopt(): Promise<ContainerInfo[]> {
    // Every container of the state dir, running or not: what still owns an attachment.
    const adopted = await this.containers.adopt();
    for (const what of await this.network.gc(new Set(adopted.map((i) => i.id))))
      this.log.info('released a network attachment left behind', { what });
    return Promise.all(adopted.map((i) => this.withIp(i)));
  }

  stop(id: string, opts: { gracePeriodSeconds?: number } = {}): Promise<ContainerInfo> {
    return this.containers.stop(id, opts);
  }

  /** Removes the container, then releases its network (address, netns, ports, files). */
  async remove(id: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.containers.remove(id, opts);
    await this.network.detach(id);
  }

  /**
   * Everything this state dir runs goes: every container (stopped at once, removed, its
   * network and volumes released), then the node network (bridge, routes, service table,
   * DNS). What `conductor down` does; the controller must not be running.
   */
  async removeAll(): Promise<void> {
    for (const info of await this.containers.list()) {
      await this.remove(info.id, { force: true });
      await this.removeVolumes(info.id);
    }
    // Attachments whose container is already gone (a removal that stopped half-way).
    await this.network.gc(new Set());
    await this.network.teardown();
  }

  // --- services, host ports, DNS ---

  /** The node network, made if it is not yet (bridge, routes, service table, DNS). */
  networkInfo(): Promise<NodeNetworkInfo> {
    return this.network.nodeInfo();
  }

  attachment(id: string): Promise<Attachment | undefined> {
    return this.network.attachment(id);
  }

  /** The service table brought to exactly `rules` (start, resync). */
  syncServices(rules: readonly ServiceRule[]): Promise<void> {
    return this.network.syncServices(rules);
  }

  /** One Service's rules, in one transaction touching only its own. */
  upsertService(rule: ServiceRule): Promise<void> {
    return this.network.upsertService(rule);
  }

  removeService(key: string): Promise<void> {
    return this.network.removeService(key);
  }

  /** Holds host ports for a holder (`Service ns/name`), or HostPortConflictError. */
  reservePorts(holder: string, ports: readonly PortMapping[]): void {
    this.network.reservePorts(holder, ports);
  }

  releasePorts(holder: string): void {
    this.network.releasePorts(holder);
  }

  /** Routes to the other nodes' containers: each one's range through its address (host-gw). */
  setPeerRoutes(peers: readonly PeerRoute[]): Promise<void> {
    return this.network.setPeerRoutes(peers);
  }

  /** One group of DNS records (a Service's, a Container's); none removes the group. */
  setDnsRecords(group: string, records: DnsRecord[]): Promise<void> {
    return this.network.setDnsRecords(group, records);
  }

  /** DNS brought to exactly these groups (start, resync). */
  syncDns(groups: ReadonlyMap<string, DnsRecord[]>): Promise<void> {
    return this.network.syncDns(groups);
  }

  /** Removes a container's volumes, once their owner is gone (after remove()). */
  removeVolumes(id: string): Promise<void> {
    return this.containers.removeVolumes(id);
  }

  /** Resolves with the final state once the container has exited (at once if it has). */
  waitForExit(id: string): Promise<ContainerInfo> {
    return this.containers.waitForExit(id);
  }

  /**
   * Calls back once when the container exits. Disposing the registration (or closing the core)
   * drops it: the callback is not called, and the wait keeps nothing alive.
   */
  onExit(
    id: string,
    callback: (info: ContainerInfo) => void,
    onError?: (err: unknown) => void,
  ): Disposable {
    const watch = new AbortController();
    this.exitWatches.add(watch);
    const done = (): void => void this.exitWatches.delete(watch);
    this.containers.waitForExit(id, watch.signal).then(
      (info) => {
        done();
        if (!watch.signal.aborted) callback(info);
      },
      (err: unknown) => {
        done();
        if (!watch.signal.aborted) onError?.(err);
      },
    );
    return { dispose: () => watch.abort() };
  }

  exec(id: string, argv: string[], opts: ExecOptions = {}): ChildProcess {
    return this.containers.exec(id, argv, opts);
  }

  execOutput(
    id: string,
    argv: string[],
    opts: Omit<ExecOptions, 'stdio'> = {},
  ): Promise<ExecResult> {
    return this.containers.execOutput(id, argv, opts);
  }

  logs(
    id: string,
    opts: { follow?: boolean; tail?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<LogEntry> {
    return this.containers.logs(id, opts);
  }

  stats(id: string): Promise<CgroupStats> {
    return this.containers.stats(id);
  }

  /** Many containers' statistics in one read (a scrape); the ones gone are left out. */
  statsMany(targets: readonly StatsRequest[]): Promise<Map<string, ContainerStats>> {
    return this.containers.statsMany(targets);
  }

  /** One probe attempt (exec, tcp or http) against a running container. */
  probe(req: ProbeRequest): Promise<ProbeOutcome> {
    return this.probes.run(req);
  }

  // --- images ---

  buildImage(req: BuildRequest): Promise<BuiltImage> {
    return this.images.build(req);
  }

  resolveImageUser(image: Pick<BuiltImage, 'layers'>, user: string): Promise<ResolvedUser> {
    return this.images.resolveUser(image, user);
  }

  /** Whether every layer (by digest) is complete in the layer store. */
  async hasLayers(layers: readonly { digest: string }[]): Promise<boolean> {
    for (const l of layers) if (!(await this.images.store.exists(layerKey(l.digest)))) return false;
    return true;
  }

  /** Stops every build in progress: they end with BuildInterruptedError; no more are taken. */
  abortBuilds(): Promise<void> {
    return this.images.abort();
  }

  /**
   * What dead builds left: their build containers (those whose builder process is gone; a live
   * `conductor build`'s are left alone), partial layers, images mounted for copy steps.
   * Returns what was removed.
   */
  async removeStaleBuilds(containers: readonly ContainerInfo[]): Promise<string[]> {
    const removed: string[] = [];
    for (const info of containers) {
      if (!isOrphanedBuild(info.annotations)) continue;
      await this.containers.remove(info.id, { force: true });
      removed.push(info.id);
    }
    return [...removed, ...(await this.images.store.removeStale())];
  }

  /**
   * Cancels the exit waits still registered and releases the installation's claim. Containers
   * keep running; a new core adopts them.
   */
  async close(): Promise<void> {
    for (const watch of this.exitWatches) watch.abort();
    this.exitWatches.clear();
    this.containers.close();
    // The node network goes with the last container: a controller that set it up and leaves
    // nothing running leaves the host as it found it (a new one makes it again).
    if (this.network.active && (await this.containers.list()).length === 0) {
      await this.network
        .teardown()
        .catch((err: unknown) =>
          this.log.warn('cannot remove the node network', { error: String(err) }),
        );
    }
    const claim = this.claim;
    this.claim = undefined;
    await claim?.();
  }
}

/** What reconcilers use of the core: the seam a fake implements in unit tests. */
export type RuntimeCoreApi = Pick<
  RuntimeCore,
  | 'networkInfo'
  | 'upsertService'
  | 'removeService'
  | 'reservePorts'
  | 'releasePorts'
  | 'setDnsRecords'
  | 'run'
  | 'find'
  | 'inspect'
  | 'statsMany'
  | 'stop'
  | 'remove'
  | 'removeVolumes'
  | 'onExit'
  | 'probe'
  | 'buildImage'
  | 'resolveImageUser'
  | 'hasLayers'
>;
