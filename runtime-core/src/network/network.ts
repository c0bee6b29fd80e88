/**
 * Container networking on the node, as the kubelet's runtimes and podman do it with CNI: each
 * bridge-mode container gets a persistent network namespace (as `ip netns add` makes one, by the
 * native core; joined by the runtime by path), attached to the installation's bridge by the
 * network configuration list — Conductor's own (bridge + host-local, portmap), written where a
 * user can read it, or the first one in an operator's `--cni-conf-dir` (containerd's
 * `conf_dir`) — and, at the same time, to the loopback network (`lo` up), as containerd's CRI
 * attaches its loopback network beside the pod network.
 *
 * The node side, made once per installation and kept while containers use it:
 * - the bridge with the gateway address (so DNS can listen before the first container);
 * - local routes that keep the container and service ranges on the machine: an `unreachable`
 *   route behind the bridge's own for the container range, the service range on the bridge
 *   with an `unreachable` fallback — a missing rule fails here, it never leaves by eth0;
 * - IPv4 forwarding (recorded, put back by teardown);
 * - the service table (service-proxy.ts: ClusterIPs, Service host ports, outbound masquerade,
 *   the martian-loopback drop that route_localnet needs);
 * - DNS (dns.ts: dnsmasq on the gateway address).
 *
 * Each attachment is recorded before anything is made (`attachments/<id>.json`), so a process
 * killed in the middle of an ADD or DEL leaves a record that gc() finishes: CNI DEL with the
 * cached result (portMappings again, which portmap's DEL needs), the netns, host-local's
 * allocations of containers that are gone.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { errCode, readJson, writeFileAtomic, writeJsonAtomic } from '../files.js';
import { silentLogger, type Logger } from '../logger.js';
import { netnsCreate, netnsRemove } from '../native.js';
import { allSettled } from '../promises.js';
import { runProcess } from '../spawn.js';
import { CNI_VERSION, CniNetwork, parseConfList, type CniConfList, type CniResult } from './cni.js';
import { containerHosts, containerResolvConf, DnsServer, type DnsRecord } from './dns.js';
import {
  checkHostSockets,
  hostIPsOverlap,
  HostPortConflictError,
  type PortMapping,
} from './host-ports.js';
import { deleteUdpFlows, staleUdpFlows } from './conntrack.js';
import { cidrAddress, cidrsOverlap, cidrWithin, parseCidr, parseIPv4, type Cidr } from './ipv4.js';
import { ServiceProxy, type ServiceRule } from './service-proxy.js';

export const DEFAULT_CONTAINER_CIDR = '10.77.0.0/16';
export const DEFAULT_SERVICE_CIDR = '10.78.0.0/16';
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';
export const RUN_DIR = '/run/conductor';
export const CNI_BIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];
/** Metric of the fallback routes: behind the bridge's (kernel, metric 0) and any a user adds. */
const FALLBACK_METRIC = 4242;
/** The routing protocol number Conductor's routes to other nodes' ranges carry, to find them. */
export const PEER_ROUTE_PROTO = '250';

export interface NetworkOptions {
  /** The container range: the cluster's (one node: the bridge subnet of Conductor's conflist). */
  containerCidr?: string;
  /**
   * This node's part of containerCidr (several nodes, Kubernetes mode): its bridge subnet and
   * its containers' addresses; the rest of containerCidr is other nodes', reached through them
   * (setPeerRoutes). Default: all of containerCidr.
   */
  nodeCidr?: string;
  /** The ClusterIP range. */
  serviceCidr?: string;
  /** An operator's conflist directory: its first .conflist/.conf (by name) is used as is. */
  cniConfDir?: string;
  /** Where CNI plugin binaries are (CNI_PATH). */
  cniBinDirs?: string[];
  /** Run DNS (dnsmasq) on the gateway (default true). */
  dns?: boolean;
  /** Where DNS forwards names it does not hold (default: the host's resolv.conf nameservers). */
  dnsUpstreams?: string[];
  clusterDomain?: string;
}

export class NetworkError extends Error {
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'NetworkError';
  }
}

export interface AttachRequest {
  id: string;
  mode: 'bridge' | 'none' | 'host';
  /** `<namespace>/<name>`: CNI_ARGS and the holder named in a port conflict. */
  namespace: string;
  name: string;
  hostname: string;
  portMappings?: PortMapping[];
}

/** NodeNetwork.begin(): the attachment's paths now, its address once `ready` settles. */
export interface PendingAttachment {
  /** Recorded, its netns made; no address yet (state `adding`). */
  att: Attachment;
  /** Settles when CNI ADD and the /etc files are done; rejects after undoing everything. */
  ready: Promise<Attachment>;
}

/** What a container got: where its namespace is, its address, the files to mount. */
export interface Attachment {
  id: string;
  mode: AttachRequest['mode'];
  owner: string;
  /** The persistent netns (bridge mode). */
  netns?: string;
  ip?: string;
  gateway?: string;
  network?: string;
  portMappings: PortMapping[];
  /** Host files to bind-mount over /etc/hosts, /etc/hostname, /etc/resolv.conf. */
  files: { hosts: string; hostname: string; resolvConf: string };
  state: 'adding' | 'ready';
}

/** What the node side is: for status, the DNS server address, the service table. */
export interface NodeNetworkInfo {
  bridge: string;
  gateway: string;
  containerCidr: string;
  /** This node's part of containerCidr (all of it on a single node). */
  nodeCidr: string;
  serviceCidr: string;
  conflist: string;
  table: string;
  /** The DNS server's address (the gateway), when DNS runs. */
  dns?: string;
  /** The cluster domain of DNS names (cluster.local). */
  domain: string;
}

/**
 * What the node side is made of on this host (`network/host.json`), written before it is
 * made: teardown — by this process, a later one, or `conductor down` without the flags — works
 * from it, not from the options of whoever runs it.
 */
interface HostRecord {
  containerCidr: string;
  /** This node's part of it (absent: all of it). */
  nodeCidr?: string;
  serviceCidr: string;
  bridge: string;
  table: string;
  /** ip_forward before Conductor set it, to put back at teardown. */
  ipForward?: string;
  bridgeCreated?: boolean;
  /**
   * The iptables-nft nat tables (`ip nat`, `ip6 nat`) that existed before: portmap makes them
   * and leaves its empty CNI-HOSTPORT-* chains behind; the ones it made go at teardown.
   */
  natTablesBefore?: string[];
  /** The operator's conflist directory the network was made with, if one was given. */
  cniConfDir?: string;
}

/**
 * The network options a state dir's node network was made with (its host.json), or undefined
 * when it has none: what `conductor down` opens the network with, whatever flags the `up` had.
 */
export async function recordedNetwork(stateDir: string): Promise<NetworkOptions | undefined> {
  const record = await readJson<HostRecord>(join(stateDir, 'network', 'host.json'));
  if (!record) return undefined;
  return {
    containerCidr: record.containerCidr,
    serviceCidr: record.serviceCidr,
    ...(record.nodeCidr !== undefined ? { nodeCidr: record.nodeCidr } : {}),
    ...(record.cniConfDir !== undefined ? { cniConfDir: record.cniConfDir } : {}),
  };
}

/** A route to another node's containers (host-gw): their range, through that node's address. */
export interface PeerRoute {
  cidr: string;
  via: string;
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await runProcess(cmd, args).catch((err: unknown) => {
    throw new NetworkError(`${cmd} ${args.join(' ')}: ${(err as Error).message}`, { cause: err });
  });
  if (r.code !== 0)
    throw new NetworkError(
      `${cmd} ${args.join(' ')}: ${r.stderr.trim() || (r.signal ? `killed by ${r.signal}` : `exit code ${String(r.code)}`)}`,
    );
  return r.stdout;
}
const ip = (...args: string[]): Promise<string> => sh('ip', args);

const FORWARD = '/proc/sys/net/ipv4/ip_forward';

export class NodeNetwork {
  readonly containerCidr: Cidr;
  readonly nodeCidr: Cidr;
  readonly serviceCidr: Cidr;
  readonly domain: string;
  readonly dir: string;
  private readonly log: Logger;
  private ready: Promise<void> | undefined;
  private cni: CniNetwork | undefined;
  /** The loopback network, attached beside `cni` (LOOPBACK_CONFLIST). */
  private lo: CniNetwork | undefined;
  private info: NodeNetworkInfo | undefined;
  private proxy: ServiceProxy | undefined;
  private dns: DnsServer | undefined;
  /** The Services' rules as last programmed, by key: what a change's stale UDP flows are. */
  private readonly programmed = new Map<string, ServiceRule>();
  /** Host ports held, by holder: attachments (`Container ns/name`) and Services. */
  private readonly held = new Map<string, PortMapping[]>();

  constructor(
    stateDir: string,
    readonly installation: string,
    private readonly opts: NetworkOptions = {},
    logger: Logger = silentLogger,
  ) {
    this.dir = join(stateDir, 'network');
    // Ranges not given are the ones this state dir last ran with (so `conductor down`, and an
    // `up` without the flags, find its network), else the defaults.
    const recorded = readRecordSync(join(this.dir, 'host.json'));
    this.containerCidr = parseCidr(
      opts.containerCidr ?? recorded?.containerCidr ?? DEFAULT_CONTAINER_CIDR,
      'containerCidr',
    );
    this.serviceCidr = parseCidr(
      opts.serviceCidr ?? recorded?.serviceCidr ?? DEFAULT_SERVICE_CIDR,
      'serviceCidr',
    );
    if (cidrsOverlap(this.containerCidr, this.serviceCidr)) {
      throw new NetworkError(
        `serviceCidr ${this.serviceCidr.text} overlaps containerCidr ${this.containerCidr.text}`,
      );
    }
    if (this.containerCidr.prefix > 30)
      throw new NetworkError(`containerCidr ${this.containerCidr.text}: needs at least a /30`);
    // A node's range is recorded with the cluster's it belongs to: another cluster range given
    // means the recorded one is not this node's any more.
    const recordedNode =
      recorded?.containerCidr === this.containerCidr.text ? recorded.nodeCidr : undefined;
    this.nodeCidr = parseCidr(opts.nodeCidr ?? recordedNode ?? this.containerCidr.text, 'nodeCidr');
    if (!cidrWithin(this.nodeCidr, this.containerCidr) || this.nodeCidr.prefix > 30)
      throw new NetworkError(
        `nodeCidr ${this.nodeCidr.text}: must be a block of at least /30 inside containerCidr ${this.containerCidr.text}`,
      );
    this.domain = opts.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN;
    this.log = logger;
  }

  /** Whether this process set the node side up (and so may take it down). */
  get active(): boolean {
    return this.info !== undefined;
  }

  /** The bridge's name: `<installation>0`, `conductor0` for the default installation. */
  get defaultBridge(): string {
    return `${this.installation}0`;
  }

  /**
   * The DNS server's files: under /run (reachable by dnsmasq, which reads them as nobody,
   * whatever the state dir's mode), one directory per installation; gone with a reboot, as the
   * process is.
   */
  get dnsDir(): string {
    return join(RUN_DIR, 'dns', this.installation);
  }

  private attachmentPath(id: string): string {
    return join(this.dir, 'attachments', `${id}.json`);
  }

  private filesDir(id: string): string {
    return join(this.dir, 'etc', id);
  }

  netnsName(id: string): string {
    return `${this.installation}-${id}`;
  }

  /**
   * Where begin() puts a container's namespace (bridge) and /etc files: known before they are
   * made, so the container's bundle can be made while they are.
   */
  paths(id: string, mode: AttachRequest['mode']): Pick<Attachment, 'netns' | 'files'> {
    return {
      files: {
        hosts: join(this.filesDir(id), 'hosts'),
        hostname: join(this.filesDir(id), 'hostname'),
        resolvConf: join(this.filesDir(id), 'resolv.conf'),
      },
      ...(mode === 'bridge' ? { netns: netnsPath(this.netnsName(id)) } : {}),
    };
  }

  /** The node side, made once (again after a failure). */
  ensure(): Promise<void> {
    this.ready ??= this.setUp().catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  async nodeInfo(): Promise<NodeNetworkInfo> {
    await this.ensure();
    if (!this.info) throw new NetworkError('the node network is not set up');
    return this.info;
  }

  private async loadConflist(): Promise<{ conf: CniConfList; file: string }> {
    const dir = this.opts.cniConfDir;
    if (dir !== undefined) {
      let names: string[];
      try {
        names = (await readdir(dir)).filter((n) => /\.(conflist|conf|json)$/.test(n)).sort();
      } catch (err) {
        throw new NetworkError(`cniConfDir ${dir}: ${(err as Error).message}`, { cause: err });
      }
      const first = names[0];
      if (first === undefined)
        throw new NetworkError(`cniConfDir ${dir}: no .conflist, .conf or .json file in it`);
      const file = join(dir, first);
      const text = await readFile(file, 'utf8');
      // A single-plugin .conf is a list of one (libcni's ConfListFromConf).
      const doc = JSON.parse(text) as Record<string, unknown>;
      const conf = Array.isArray(doc.plugins)
        ? parseConfList(text, file)
        : parseConfList(
            JSON.stringify({ cniVersion: doc.cniVersion, name: doc.name, plugins: [doc] }),
            file,
          );
      return { conf, file };
    }
    const file = join(this.dir, 'net.d', `10-${this.installation}.conflist`);
    const conf = this.defaultConflist();
    const text = `${JSON.stringify(conf, null, 2)}\n`;
    let old: string | undefined;
    try {
      old = await readFile(file, 'utf8');
    } catch {
      old = undefined;
    }
    if (old !== text) await writeFileAtomic(file, text);
    return { conf, file };
  }

  /** Conductor's own conflist: the one the issue and README describe. */
  defaultConflist(): CniConfList {
    return {
      cniVersion: CNI_VERSION,
      name: this.installation,
      plugins: [
        {
          type: 'bridge',
          bridge: this.defaultBridge,
          isGateway: true,
          // Outbound NAT is the service table's (one rule for the range), not iptables rules
          // per container in the host's nat table.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [
              [
                {
                  subnet: this.nodeCidr.text,
                  gateway: cidrAddress(this.nodeCidr, 1),
                },
              ],
            ],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: join(this.dir, 'ipam'),
          },
        },
        { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      ],
    };
  }

  private async setUp(): Promise<void> {
    const { conf, file } = await this.loadConflist();
    const bridgePlugin = conf.plugins.find((p) => p.type === 'bridge');
    const bridge =
      typeof bridgePlugin?.bridge === 'string' ? bridgePlugin.bridge : this.defaultBridge;
    const gateway = cidrAddress(this.nodeCidr, 1);
    // An operator's conflist decides the addresses; the rules and routes are for the range
    // Conductor was given: they must be the same one.
    const subnets = ipamSubnets(bridgePlugin?.ipam);
    if (subnets.length && !subnets.includes(this.nodeCidr.text)) {
      throw new NetworkError(
        `${file}: its IPAM subnet ${subnets.join(', ')} is not the container range ${this.nodeCidr.text}: start with --container-cidr ${subnets[0] ?? ''}`,
      );
    }
    let record = await this.hostRecord();
    if (
      record &&
      (record.containerCidr !== this.containerCidr.text ||
        (record.nodeCidr ?? record.containerCidr) !== this.nodeCidr.text ||
        record.serviceCidr !== this.serviceCidr.text ||
        record.bridge !== bridge)
    ) {
      // Started with other ranges than last time: fine once nothing uses the old ones.
      const left = await this.attachments();
      if (left.length) {
        throw new NetworkError(
          `this state dir's network is ${record.containerCidr} (services ${record.serviceCidr}, bridge ${record.bridge}) and ${left.length} container(s) use it: start with those ranges, or run \`conductor down\` first`,
        );
      }
      await this.teardownRecorded(record);
      record = undefined;
    }
    await this.checkRoutes(bridge);
    record ??= {
      containerCidr: this.containerCidr.text,
      ...(this.nodeCidr.text !== this.containerCidr.text ? { nodeCidr: this.nodeCidr.text } : {}),
      serviceCidr: this.serviceCidr.text,
      bridge,
      table: this.installation,
      ipForward: readFileSync(FORWARD, 'utf8').trim(),
      natTablesBefore: await natTables(),
      ...(this.opts.cniConfDir !== undefined ? { cniConfDir: this.opts.cniConfDir } : {}),
    };
    await writeJsonAtomic(join(this.dir, 'host.json'), record);
    if (!(await linkExists(bridge))) {
      await ip('link', 'add', bridge, 'type', 'bridge');
      record.bridgeCreated = true;
      await writeJsonAtomic(join(this.dir, 'host.json'), record);
    }
    await ip('addr', 'replace', `${gateway}/${this.nodeCidr.prefix}`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
    await writeFile(FORWARD, '1');
    // The container range: the bridge's own route, and behind it an unreachable one.
    await ip(
      'route',
      'replace',
      'unreachable',
      this.containerCidr.text,
      'metric',
      String(FALLBACK_METRIC),
    );
    // The service range: on the bridge (a local connect() needs a route before DNAT), and an
    // unreachable fallback should the bridge go.
    await ip('route', 'replace', this.serviceCidr.text, 'dev', bridge, 'proto', 'static');
    await ip(
      'route',
      'replace',
      'unreachable',
      this.serviceCidr.text,
      'metric',
      String(FALLBACK_METRIC),
    );
    const cniOpts = {
      binDirs: this.opts.cniBinDirs ?? CNI_BIN_DIRS,
      cacheDir: join(this.dir, 'cni-cache'),
    };
    this.cni = new CniNetwork(conf, cniOpts);
    this.lo = new CniNetwork(LOOPBACK_CONFLIST, cniOpts);
    this.proxy = new ServiceProxy({
      table: this.installation,
      containerCidr: this.containerCidr.text,
      serviceCidr: this.serviceCidr.text,
      bridge,
      logger: this.log,
    });
    // A table a previous process left is kept as it is until the controller syncs it from its
    // cache (no gap for running Services); a missing one is made, with its base chains.
    if (!(await nftTableExists(this.installation))) await this.proxy.sync([]);
    if (this.opts.dns !== false) {
      this.dns = new DnsServer({
        listenAddress: gateway,
        dir: this.dnsDir,
        domain: this.domain,
        ...(this.opts.dnsUpstreams ? { upstreams: this.opts.dnsUpstreams } : {}),
        logger: this.log,
      });
      await this.dns.start();
    }
    this.info = {
      bridge,
      gateway,
      containerCidr: this.containerCidr.text,
      nodeCidr: this.nodeCidr.text,
      serviceCidr: this.serviceCidr.text,
      conflist: file,
      table: this.installation,
      ...(this.dns ? { dns: gateway } : {}),
      domain: this.domain,
    };
    // What earlier processes recorded holds its ports still.
    for (const a of await this.attachments())
      if (a.portMappings.length) this.held.set(a.owner, a.portMappings);
    this.log.info('node network ready', { ...this.info });
  }

  /** Refuses ranges another interface already routes (another installation, a VPN, a LAN). */
  private async checkRoutes(bridge: string): Promise<void> {
    const routes = JSON.parse(await ip('-j', '-4', 'route', 'show')) as {
      dst: string;
      dev?: string;
      type?: string;
      protocol?: string;
    }[];
    for (const r of routes) {
      if (r.dst === 'default' || r.dev === bridge || r.type === 'unreachable') continue;
      if (r.protocol === PEER_ROUTE_PROTO) continue; // ours, to another node's containers
      const dst = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
      let c: Cidr;
      try {
        c = parseCidr(dst, 'route');
      } catch {
        continue;
      }
      for (const [flag, mine] of [
        ['--container-cidr', this.containerCidr],
        ['--service-cidr', this.serviceCidr],
      ] as const) {
        if (cidrsOverlap(c, mine)) {
          throw new NetworkError(
            `${mine.text} (${flag}) overlaps the host's route ${r.dst}${r.dev ? ` dev ${r.dev}` : ''}: another installation or network uses it; give this one another range with ${flag}`,
          );
        }
      }
    }
  }

  // --- attachments ---

  /**
   * Reserves the ports (throws HostPortConflictError naming the holder), then makes what the
   * mode needs: bridge — a netns attached by CNI, with an address; none and host — only the
   * /etc files.
   */
  async attach(req: AttachRequest): Promise<Attachment> {
    return (await this.begin(req)).ready;
  }

  /**
   * attach() in two steps, for a caller with work of its own meanwhile (the runtime core makes
   * the container's bundle while CNI runs): resolves once the attachment is recorded, its host
   * ports reserved and its netns made — `att` has the paths a container's config needs (netns,
   * /etc files) — and `ready` settles when CNI ADD and the /etc files are done, with the
   * address. Whatever fails has been undone when the promise that reports it settles.
   */
  async begin(req: AttachRequest): Promise<PendingAttachment> {
    const owner = `Container ${req.namespace}/${req.name}`;
    const ports = req.portMappings ?? [];
    if (ports.length && req.mode !== 'bridge') {
      throw new NetworkError(`ports[].hostPort: needs network "bridge", not "${req.mode}"`);
    }
    await this.ensure();
    this.reservePorts(owner, ports);
    const { files, netns } = this.paths(req.id, req.mode);
    const att: Attachment = {
      id: req.id,
      mode: req.mode,
      owner,
      portMappings: ports,
      files,
      state: 'adding',
      ...(netns !== undefined ? { netns, network: this.cni?.conf.name } : {}),
    };
    const undo = async (err: unknown): Promise<never> => {
      await this.detach(req.id).catch((e: unknown) =>
        this.log.warn('cleaning up a failed attachment', { id: req.id, error: String(e) }),
      );
      throw err;
    };
    try {
      await writeJsonAtomic(this.attachmentPath(req.id), att);
      if (req.mode === 'bridge') {
        const name = this.netnsName(req.id);
        if (netnsExists(name)) await this.cniDel(att).catch(() => undefined);
        if (netnsExists(name)) await netnsRemove(netnsPath(name));
        await netnsCreate(netnsPath(name));
      }
    } catch (err) {
      return undo(err);
    }
    // CNI ADD starts as soon as the namespace exists; the /etc files are made meanwhile, empty,
    // for the container's config to name (the runtime bind-mounts them at create), and filled
    // in once the address is known, before the container starts.
    const added = req.mode === 'bridge' ? this.cniAdd(req, att) : Promise.resolve(undefined);
    const filesMade = mkdir(this.filesDir(req.id), { recursive: true, mode: 0o755 }).then(() =>
      Promise.all(Object.values(files).map((f) => writeFile(f, '', { mode: 0o644 }))),
    );
    const ready = (async (): Promise<Attachment> => {
      const [result] = await allSettled([added, filesMade]);
      if (result) {
        const addr = pickAddress(result);
        if (!addr)
          throw new NetworkError(`CNI ADD ${att.network ?? ''}: the result has no IPv4 address`);
        att.ip = addr.ip;
        if (addr.gateway) att.gateway = addr.gateway;
      }
      await this.writeFiles(req, att);
      att.state = 'ready';
      await writeJsonAtomic(this.attachmentPath(req.id), att);
      return att;
    })().catch(undo);
    // begin() answers once the files exist; a failure to make them is reported once the ADD has
    // settled and everything was undone (by `ready`).
    await filesMade.catch(() => ready);
    return { att: { ...att, files: { ...files } }, ready };
  }

  private cniAttachment(att: Attachment, namespace?: string, name?: string) {
    return {
      containerId: att.id,
      netns: att.netns ?? '',
      ifName: 'eth0',
      args: {
        IgnoreUnknown: '1',
        ...(namespace !== undefined ? { K8S_POD_NAMESPACE: namespace } : {}),
        ...(name !== undefined ? { K8S_POD_NAME: name, K8S_POD_INFRA_CONTAINER_ID: att.id } : {}),
      },
      capabilityArgs: { portMappings: att.portMappings },
    };
  }

  /** ADD of the main network and of the loopback network, side by side (each its own chain). */
  private async cniAdd(req: AttachRequest, att: Attachment): Promise<CniResult> {
    if (!this.cni || !this.lo) throw new NetworkError('the node network is not set up');
    const cni = this.cniAttachment(att, req.namespace, req.name);
    // Whichever failed, detach() (the caller's undo) DELs both.
    const [main] = await allSettled([this.cni.add(cni), this.lo.add({ ...cni, ifName: 'lo' })]);
    return main;
  }

  private async cniDel(att: Attachment): Promise<void> {
    if (!this.cni || !this.lo) throw new NetworkError('the node network is not set up');
    const cni = this.cniAttachment(att);
    const skipped = (
      await allSettled([this.cni.del(cni), this.lo.del({ ...cni, ifName: 'lo' })])
    ).flat();
    if (skipped.length)
      this.log.warn('CNI DEL skipped plugins that are not installed', { id: att.id, skipped });
  }

  /** Fills the /etc files begin() made (in place: the container's config names them). */
  private async writeFiles(req: AttachRequest, att: Attachment): Promise<void> {
    const info = this.info;
    let hosts: string;
    let resolv: string;
    if (req.mode === 'host') {
      hosts = await readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1\tlocalhost\n');
      resolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    } else {
      hosts = containerHosts({ hostname: req.hostname, ...(att.ip ? { ip: att.ip } : {}) });
      resolv =
        req.mode === 'bridge' && info?.dns
          ? containerResolvConf({
              nameserver: info.dns,
              namespace: req.namespace,
              domain: this.domain,
            })
          : await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    }
    await writeFile(att.files.hosts, hosts, { mode: 0o644 });
    await writeFile(att.files.hostname, `${req.hostname}\n`, { mode: 0o644 });
    await writeFile(att.files.resolvConf, resolv, { mode: 0o644 });
  }

  /** Releases everything an attachment holds; succeeds on what is half-made or gone. */
  async detach(id: string): Promise<void> {
    const att = await readJson<Attachment>(this.attachmentPath(id));
    if (att?.mode === 'bridge' || netnsExists(this.netnsName(id))) {
      await this.ensure();
      const a: Attachment = att ?? {
        id,
        mode: 'bridge',
        owner: '',
        portMappings: [],
        netns: netnsPath(this.netnsName(id)),
        files: { hosts: '', hostname: '', resolvConf: '' },
        state: 'adding',
      };
      a.netns ??= netnsPath(this.netnsName(id));
      await this.cniDel(a);
      await netnsRemove(netnsPath(this.netnsName(id))); // gone already is fine
    }
    if (att) this.held.delete(att.owner);
    await rm(this.filesDir(id), { recursive: true, force: true });
    await rm(this.attachmentPath(id), { force: true });
  }

  async attachment(id: string): Promise<Attachment | undefined> {
    return readJson<Attachment>(this.attachmentPath(id));
  }

  async attachments(): Promise<Attachment[]> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, 'attachments'));
    } catch (err) {
      if (errCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: Attachment[] = [];
    for (const n of names.filter((x) => x.endsWith('.json'))) {
      const a = await readJson<Attachment>(join(this.dir, 'attachments', n));
      if (a) out.push(a);
    }
    return out;
  }

  /**
   * What dead processes left: attachments of containers that are not in `live` (a controller
   * killed mid-ADD, a container removed behind the core's back), our netns without a record,
   * host-local allocations of container ids we do not know. Returns what it removed.
   */
  async gc(live: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    // Half-written records of a process killed mid-write (writeJsonAtomic's `.PID.N.tmp`): no
    // other process writes here while this one holds the installation.
    const records = join(this.dir, 'attachments');
    for (const f of await readdir(records).catch((): string[] => [])) {
      if (!/^\.\d+\.\d+\.tmp$/.test(f)) continue;
      await rm(join(records, f), { force: true });
      removed.push(`temporary file ${f}`);
    }
    const known = new Set<string>();
    for (const a of await this.attachments()) {
      if (live.has(a.id)) {
        known.add(a.id);
        continue;
      }
      await this.detach(a.id);
      removed.push(`attachment ${a.id}`);
    }
    const prefix = `${this.installation}-`;
    for (const n of netnsNames()) {
      if (!n.startsWith(prefix)) continue;
      const id = n.slice(prefix.length);
      if (known.has(id) || live.has(id)) continue;
      await this.detach(id);
      removed.push(`netns ${n}`);
    }
    // host-local: one file per address holding "<container id>\n<ifname>".
    const ipam = join(this.dir, 'ipam', this.cni?.conf.name ?? this.installation);
    for (const f of await readdir(ipam).catch((): string[] => [])) {
      if (parseIPv4(f) === undefined) continue;
      const owner = (await readFile(join(ipam, f), 'utf8').catch(() => ''))
        .split(/\r?\n/)[0]
        ?.trim();
      if (owner && !known.has(owner) && !live.has(owner)) {
        await rm(join(ipam, f), { force: true });
        removed.push(`address ${f}`);
      }
    }
    return removed;
  }

  // --- host ports ---

  /**
   * Holds `ports` for `holder` (`Container ns/name`, `Service ns/name`), or throws
   * HostPortConflictError naming who has one already: another holder, or a host process. Done
   * synchronously, so two concurrent requests cannot both get a port.
   */
  reservePorts(holder: string, ports: readonly PortMapping[]): void {
    const seen: PortMapping[] = [];
    for (const p of ports) {
      for (const s of seen) {
        if (
          s.hostPort === p.hostPort &&
          s.protocol === p.protocol &&
          hostIPsOverlap(s.hostIP, p.hostIP)
        )
          throw new NetworkError(
            `host port ${p.hostPort}/${p.protocol.toUpperCase()} is listed twice`,
          );
      }
      seen.push(p);
      for (const [other, theirs] of this.held) {
        if (other === holder) continue;
        for (const t of theirs) {
          if (
            t.hostPort === p.hostPort &&
            t.protocol === p.protocol &&
            hostIPsOverlap(t.hostIP, p.hostIP)
          )
            throw new HostPortConflictError(p.hostPort, p.protocol, other);
        }
      }
      const mine = this.held.get(holder) ?? [];
      const had = mine.some((t) => t.hostPort === p.hostPort && t.protocol === p.protocol);
      if (!had) checkHostSockets(p);
    }
    if (ports.length) this.held.set(holder, [...ports]);
    else this.held.delete(holder);
  }

  releasePorts(holder: string): void {
    this.held.delete(holder);
  }

  // --- services and DNS ---

  async syncServices(rules: readonly ServiceRule[]): Promise<void> {
    await this.ensure();
    await this.proxy?.sync(rules);
    this.programmed.clear();
    for (const r of rules) this.programmed.set(r.key, r);
  }

  /** One Service's rules; then the UDP flows to endpoints it no longer has go (conntrack.ts). */
  async upsertService(rule: ServiceRule): Promise<void> {
    await this.ensure();
    await this.proxy?.upsert(rule);
    const old = this.programmed.get(rule.key);
    this.programmed.set(rule.key, rule);
    await deleteUdpFlows(staleUdpFlows(old, rule), this.log);
  }

  async removeService(key: string): Promise<void> {
    await this.ensure();
    await this.proxy?.remove(key);
    const old = this.programmed.get(key);
    this.programmed.delete(key);
    await deleteUdpFlows(staleUdpFlows(old, undefined), this.log);
  }

  async setDnsRecords(group: string, records: DnsRecord[]): Promise<void> {
    await this.ensure();
    if (!this.dns) return;
    if (records.length) await this.dns.setRecords(group, records);
    else await this.dns.removeRecords(group);
  }

  async syncDns(groups: ReadonlyMap<string, DnsRecord[]>): Promise<void> {
    await this.ensure();
    await this.dns?.sync(groups);
  }

  /**
   * Routes to the other nodes' containers (host-gw, as flannel's and kindnet's): each node's
   * range through that node's address. Replaces what was there: routes of nodes not given any
   * more go. They carry protocol PEER_ROUTE_PROTO, so they are found again after a restart and
   * removed at teardown.
   */
  async setPeerRoutes(peers: readonly PeerRoute[]): Promise<void> {
    await this.ensure();
    for (const p of peers) {
      const c = parseCidr(p.cidr, 'peer route');
      if (cidrsOverlap(c, this.nodeCidr) || !cidrsOverlap(c, this.containerCidr))
        throw new NetworkError(
          `peer route ${p.cidr} via ${p.via}: not another node's part of ${this.containerCidr.text}`,
        );
      if (parseIPv4(p.via) === undefined)
        throw new NetworkError(`peer route ${p.cidr} via ${p.via}: not an IPv4 address`);
    }
    const wanted = new Map(peers.map((p) => [p.cidr, p.via]));
    for (const r of await peerRoutes()) {
      if (wanted.get(r.dst) === r.gateway) wanted.delete(r.dst);
      else await ip('route', 'del', r.dst, 'proto', PEER_ROUTE_PROTO).catch(() => undefined);
    }
    for (const [cidr, via] of wanted)
      await ip('route', 'replace', cidr, 'via', via, 'proto', PEER_ROUTE_PROTO);
  }

  /**
   * Removes the node side (service table, DNS, routes, the bridge if Conductor made it, IPv4
   * forwarding as it was): when no container uses it any more. Attachments left are an error.
   */
  async teardown(): Promise<void> {
    const left = await this.attachments();
    if (left.length) {
      throw new NetworkError(
        `${left.length} container(s) still attached (${left.map((a) => a.id).join(', ')}): remove them first`,
      );
    }
    const record = await this.hostRecord();
    if (record) await this.teardownRecorded(record);
    await rm(this.dir, { recursive: true, force: true });
    this.ready = undefined;
    this.info = undefined;
    this.proxy = undefined;
    this.dns = undefined;
    this.held.clear();
  }

  private hostRecord(): Promise<HostRecord | undefined> {
    return readJson<HostRecord>(join(this.dir, 'host.json'));
  }

  /** Removes what `record` says was made; each step succeeds on what is already gone. */
  private async teardownRecorded(record: HostRecord): Promise<void> {
    await (
      this.proxy ??
      new ServiceProxy({
        table: record.table,
        containerCidr: record.containerCidr,
        serviceCidr: record.serviceCidr,
        bridge: record.bridge,
        logger: this.log,
      })
    ).destroy();
    await (
      this.dns ??
      new DnsServer({
        listenAddress: cidrAddress(
          parseCidr(record.nodeCidr ?? record.containerCidr, 'nodeCidr'),
          1,
        ),
        dir: this.dnsDir,
        domain: this.domain,
        logger: this.log,
      })
    ).stop();
    for (const cidr of [record.containerCidr, record.serviceCidr]) {
      await ip('route', 'del', 'unreachable', cidr, 'metric', String(FALLBACK_METRIC)).catch(
        () => undefined,
      );
    }
    await ip('route', 'del', record.serviceCidr, 'dev', record.bridge).catch(() => undefined);
    for (const r of await peerRoutes())
      if (cidrsOverlap(parseCidr(r.dst, 'route'), parseCidr(record.containerCidr, 'containerCidr')))
        await ip('route', 'del', r.dst, 'proto', PEER_ROUTE_PROTO).catch(() => undefined);
    if (record.bridgeCreated && (await linkExists(record.bridge)))
      await ip('link', 'del', record.bridge);
    if (record.ipForward !== undefined) await writeFile(FORWARD, record.ipForward);
    await removePortmapTables(record.natTablesBefore ?? []);
    await rmdir(join(RUN_DIR, 'dns')).catch(() => undefined); // the last installation's
    await rm(join(this.dir, 'host.json'), { force: true });
  }
}

/**
 * The address this host's traffic leaves with: the source address of the route to an outside
 * address (a lookup in the routing table; nothing is sent). What other nodes reach this one at.
 */
export async function defaultRouteAddress(): Promise<string> {
  const routes = JSON.parse(await ip('-j', '-4', 'route', 'get', '192.0.2.1')) as {
    prefsrc?: string;
  }[];
  const src = routes[0]?.prefsrc;
  if (!src)
    throw new NetworkError('no route out of this host to take its address from: give --node-ip');
  return src;
}

/** Conductor's routes to other nodes' ranges in this network namespace. */
async function peerRoutes(): Promise<{ dst: string; gateway?: string }[]> {
  const routes = JSON.parse(await ip('-j', '-4', 'route', 'show', 'proto', PEER_ROUTE_PROTO)) as {
    dst: string;
    gateway?: string;
  }[];
  return routes.map((r) => ({ ...r, dst: r.dst.includes('/') ? r.dst : `${r.dst}/32` }));
}

/** The subnets of a host-local-style `ipam` ({ranges: [[{subnet}]]} or {subnet}). */
function ipamSubnets(ipam: unknown): string[] {
  if (typeof ipam !== 'object' || ipam === null) return [];
  const o = ipam as { subnet?: unknown; ranges?: unknown };
  const out: string[] = [];
  if (typeof o.subnet === 'string') out.push(o.subnet);
  if (Array.isArray(o.ranges))
    for (const set of o.ranges)
      if (Array.isArray(set))
        for (const r of set)
          if (
            typeof r === 'object' &&
            r !== null &&
            typeof (r as { subnet?: unknown }).subnet === 'string'
          )
            out.push((r as { subnet: string }).subnet);
  return out;
}

function readRecordSync(path: string): Partial<HostRecord> | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Partial<HostRecord>;
  } catch {
    return undefined;
  }
}

async function linkExists(name: string): Promise<boolean> {
  return ip('link', 'show', 'dev', name).then(
    () => true,
    () => false,
  );
}

/** The iptables-nft nat tables present (`ip nat`, `ip6 nat`). */
async function natTables(): Promise<string[]> {
  const out = await sh('nft', ['list', 'tables']);
  return out
    .split('\n')
    .map((l) => l.trim().replace(/^table /, ''))
    .filter((t) => t === 'ip nat' || t === 'ip6 nat');
}

/**
 * The nat tables portmap made (through iptables-nft) go, when they hold nothing but its own
 * empty chains and the hooks that jump to them: another user's rules (podman's, docker's, a
 * container's CNI-DN-* chain) keep a table.
 */
async function removePortmapTables(before: readonly string[]): Promise<void> {
  for (const family of ['ip', 'ip6'] as const) {
    if (before.includes(`${family} nat`)) continue;
    let doc: { nftables?: Record<string, { name?: string; chain?: string; expr?: unknown[] }>[] };
    try {
      doc = JSON.parse(await sh('nft', ['-j', 'list', 'table', family, 'nat'])) as typeof doc;
    } catch {
      continue; // not there
    }
    const items = doc.nftables ?? [];
    const ours = (name: string | undefined): boolean =>
      name !== undefined && /^CNI-HOSTPORT-(DNAT|SETMARK|MASQ)$/.test(name);
    const base = new Set(['PREROUTING', 'OUTPUT', 'POSTROUTING', 'INPUT']);
    let foreign = false;
    for (const item of items) {
      const chain = item.chain?.name;
      if (chain !== undefined && !ours(chain) && !base.has(chain)) foreign = true;
      const rule = item.rule;
      if (!rule) continue;
      const text = JSON.stringify(rule.expr ?? []);
      const jumpsToOurs = /"(jump|goto)":\{"target":"CNI-HOSTPORT-(DNAT|SETMARK|MASQ)"\}/.test(
        text,
      );
      // Our chains' own rules (the mark, the masquerade of marked packets) are portmap's too.
      if (!jumpsToOurs && !ours(rule.chain)) foreign = true;
    }
    if (!foreign) await sh('nft', ['delete', 'table', family, 'nat']);
  }
}

async function nftTableExists(name: string): Promise<boolean> {
  return sh('nft', ['list', 'table', 'ip', name]).then(
    () => true,
    () => false,
  );
}

/**
 * The loopback network every bridge-mode container gets beside the main one (containerd's
 * go-cni WithLoNetwork): its own chain, so it runs at the same time as the main chain's ADD.
 */
const LOOPBACK_CONFLIST: CniConfList = {
  cniVersion: CNI_VERSION,
  name: 'cni-loopback',
  plugins: [{ type: 'loopback' }],
};

/** Where `ip netns` keeps named network namespaces (iproute2's NETNS_RUN_DIR). */
const NETNS_DIR = '/run/netns';
const netnsPath = (name: string): string => join(NETNS_DIR, name);

/** The named network namespaces (/run/netns). */
export function netnsNames(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

function netnsExists(name: string): boolean {
  return netnsNames().includes(name);
}

/** The container's address: the IPv4 on the interface in the sandbox (or the first). */
function pickAddress(r: CniResult): { ip: string; gateway?: string } | undefined {
  const inSandbox = new Set((r.interfaces ?? []).flatMap((i, n) => (i.sandbox ? [n] : [])));
  const v4 = (r.ips ?? []).filter((x) => parseIPv4(x.address.split('/')[0] ?? '') !== undefined);
  const pick = v4.find((x) => x.interface !== undefined && inSandbox.has(x.interface)) ?? v4[0];
  if (!pick) return undefined;
  return {
    ip: pick.address.split('/')[0] ?? '',
    ...(pick.gateway ? { gateway: pick.gateway } : {}),
  };
}
