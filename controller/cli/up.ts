/**
 * `conductor up`: runs the controller in the foreground until SIGINT or SIGTERM, then stops it
 * gracefully (the work queues drain; containers keep running and are adopted by the next `up`).
 * A second signal while stopping exits at once.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import {
  DEFAULT_CONTAINER_CIDR,
  DEFAULT_SERVICE_CIDR,
  INSTALLATION_PATTERN,
  parseCidr,
  parseIPv4,
  type Logger,
  type NetworkOptions,
} from '../../runtime-core/src/index.js';
import { COMMON_OPTIONS, DEFAULT_METRICS_ADDR, DEFAULT_WATCH_DIR, parseCommand } from './flags.js';
import { CliError, UsageError, errorMessage, type CliIO } from './io.js';
import { streamLogger } from './logger.js';
import { formatFieldError } from '../validation/field-error.js';
import { checkLabels } from '../validation/metadata.js';

export const UP_USAGE = `Run the controller in the foreground.

Usage:
  conductor up [--watch DIR | --kubeconfig PATH | --in-cluster] [--node-name NAME] [--node-ip IP]
               [--node-labels K=V,...] [--node-cidr-mask-size N] [--build-context DIR]
               [--state-dir DIR]
               [--metrics-addr HOST:PORT] [--concurrency N] [--installation NAME]
               [--container-cidr CIDR] [--service-cidr CIDR] [--cni-conf-dir DIR]
               [--cluster-domain DOMAIN] [--stuck-after SECONDS] [-v]

Options:
      --watch DIR               manifest directory to watch (default ${DEFAULT_WATCH_DIR})
      --kubeconfig PATH         Kubernetes mode: run as the node agent of the cluster in PATH's
                                current context instead of watching a directory: Images,
                                Containers and Services come from its API server (apply
                                crds/ first), status and events go back to it
      --in-cluster              Kubernetes mode inside a Pod (manifests/deploy/): the API server
                                of KUBERNETES_SERVICE_HOST/PORT, as the Pod's ServiceAccount
      --node-name NAME          Kubernetes mode: this node's name, the reporting instance of
                                its events (default the hostname in lower case)
      --node-ip IP              Kubernetes mode: the address the other nodes reach this one's
                                containers through (default: the source address of the
                                default route); each node holds a part of --container-cidr
      --node-labels K=V,...     Kubernetes mode: this node's labels, as the kubelet's flag; an
                                unbound Container is claimed only by a node whose labels
                                include its spec.nodeSelector
      --node-cidr-mask-size N   Kubernetes mode: the size of each node's part of --container-cidr
                                (default 24, or a quarter of a range smaller than a /22; as
                                kube-controller-manager's flag); a node runs at most 2^(32-N)-2
                                containers with an address
      --build-context DIR       Kubernetes mode: the directory the relative paths of Images from
                                the API server resolve against (copy sources, from: paths), as
                                a manifest's own directory does in directory mode; without it
                                such Images cannot have copy steps
      --state-dir DIR           state directory (default /var/lib/conductor)
      --metrics-addr HOST:PORT  /metrics, /healthz and /readyz (default ${DEFAULT_METRICS_ADDR})
      --concurrency N           containers reconciled at once (default 4)
      --installation NAME       names what this installation makes on the host (cgroups under
                                /NAME), so state dirs side by side never share any: default
                                the name the state dir was first started with, else
                                "conductor" for /var/lib/conductor and cnd-<hash> for another
      --container-cidr CIDR     the containers' addresses, on the bridge <installation>0
                                (default ${DEFAULT_CONTAINER_CIDR})
      --service-cidr CIDR       Services' virtual IPs (default ${DEFAULT_SERVICE_CIDR})
      --cni-conf-dir DIR        use the first .conflist in DIR (as containerd's conf_dir)
                                instead of Conductor's own (STATE/network/net.d/)
      --cluster-domain DOMAIN   DNS names are NAME.NAMESPACE.svc.DOMAIN (default cluster.local)
      --stuck-after SECONDS     /healthz fails when a reconcile runs this long without progress
                                (default 300)
  -v, --verbose                 debug logging
`;

export interface RunControllerOptions {
  watchDir: string;
  /** Kubernetes mode: the API server of this kubeconfig instead of watchDir. */
  kubeconfig?: string;
  /** Kubernetes mode with the Pod's ServiceAccount (--in-cluster; root: where its files are). */
  inCluster?: { root?: string };
  /** Kubernetes mode: the node's name (the manager defaults it to the hostname). */
  nodeName?: string;
  /** Kubernetes mode: the address other nodes reach this one's containers through. */
  nodeIp?: string;
  /** Kubernetes mode: what the relative paths of Images from the API server resolve against. */
  buildContext?: string;
  /** Kubernetes mode: the prefix length of each node's part of the container range. */
  nodeCidrMaskSize?: number;
  /** Kubernetes mode: this node's labels (unbound Containers' nodeSelector must match). */
  nodeLabels?: Record<string, string>;
  stateDir: string;
  metricsAddr: string;
  logLevel: 'info' | 'debug';
  /** Workers of the Container controller (MaxConcurrentReconciles). */
  concurrency?: { Container?: number };
  installation?: string;
  network?: NetworkOptions;
  /** /healthz fails when a reconcile runs this long without progress. */
  stuckAfterMs?: number;
  /** Where the controller logs: stderr, debug lines only with -v. */
  logger?: Logger;
}

/** The contract of controller/manager.ts. */
export interface ManagerModule {
  runController(opts: RunControllerOptions): Promise<{ stop(): Promise<void> }>;
}

export interface UpArgs extends RunControllerOptions {
  help: boolean;
}

export function parseUpArgs(argv: string[], cwd: string): UpArgs {
  const { values, positionals } = parseCommand('up', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        watch: { type: 'string' },
        kubeconfig: { type: 'string' },
        'in-cluster': { type: 'boolean' },
        'node-name': { type: 'string' },
        'node-ip': { type: 'string' },
        'build-context': { type: 'string' },
        'node-cidr-mask-size': { type: 'string' },
        'node-labels': { type: 'string' },
        'metrics-addr': { type: 'string', default: DEFAULT_METRICS_ADDR },
        verbose: { type: 'boolean', short: 'v', default: false },
        concurrency: { type: 'string', default: '4' },
        installation: { type: 'string' },
        'container-cidr': { type: 'string' },
        'service-cidr': { type: 'string' },
        'cni-conf-dir': { type: 'string' },
        'cluster-domain': { type: 'string' },
        'stuck-after': { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (positionals.length > 0) {
    throw new UsageError(`unexpected arguments: ${positionals.join(' ')}`, 'up');
  }
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5}$/.test(values['metrics-addr'])) {
    throw new UsageError(
      `--metrics-addr must be HOST:PORT, got ${JSON.stringify(values['metrics-addr'])}`,
      'up',
    );
  }
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new UsageError(
      `--concurrency must be a whole number from 1 to 64, got ${JSON.stringify(values.concurrency)}`,
      'up',
    );
  }
  const stuckAfter = values['stuck-after'];
  const stuckSeconds = Number(stuckAfter);
  if (stuckAfter !== undefined && (!/^\d+$/.test(stuckAfter) || stuckSeconds < 1)) {
    throw new UsageError(
      `--stuck-after must be a whole number of seconds, at least 1, got ${JSON.stringify(stuckAfter)}`,
      'up',
    );
  }
  const kubeconfig = values.kubeconfig;
  const inCluster = values['in-cluster'] === true;
  const nodeName = values['node-name'];
  const nodeIp = values['node-ip'];
  const buildContext = values['build-context'];
  const kubernetesOnly = (flag: string, value: string | undefined): void => {
    if (value !== undefined && kubeconfig === undefined && !inCluster)
      throw new UsageError(
        `${flag} is for Kubernetes mode (with --kubeconfig or --in-cluster)`,
        'up',
      );
  };
  kubernetesOnly('--node-ip', nodeIp);
  kubernetesOnly('--node-name', nodeName);
  kubernetesOnly('--build-context', buildContext);
  const labelsText = values['node-labels'];
  kubernetesOnly('--node-labels', labelsText);
  const nodeLabels = labelsText === undefined ? undefined : parseNodeLabels(labelsText);
  const maskText = values['node-cidr-mask-size'];
  kubernetesOnly('--node-cidr-mask-size', maskText);
  const nodeCidrMaskSize = Number(maskText);
  if (maskText !== undefined && (!/^\d+$/.test(maskText) || nodeCidrMaskSize > 30))
    throw new UsageError(
      `--node-cidr-mask-size must be a prefix length of at most 30, got ${JSON.stringify(maskText)}`,
      'up',
    );
  if (buildContext !== undefined) {
    const dir = resolve(cwd, buildContext);
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      // reported below
    }
    if (!isDir) throw new UsageError(`--build-context ${buildContext}: not a directory`, 'up');
  }
  if (nodeIp !== undefined) {
    if (parseIPv4(nodeIp) === undefined)
      throw new UsageError(
        `--node-ip must be an IPv4 address, got ${JSON.stringify(nodeIp)}`,
        'up',
      );
  }
  if ((kubeconfig !== undefined || inCluster) && values.watch !== undefined) {
    throw new UsageError(
      `--watch and ${inCluster ? '--in-cluster' : '--kubeconfig'} exclude each other: the objects come from a directory or from an API server`,
      'up',
    );
  }
  if (kubeconfig !== undefined && inCluster)
    throw new UsageError('--kubeconfig and --in-cluster exclude each other', 'up');
  if (kubeconfig === '') throw new UsageError('--kubeconfig needs a path', 'up');
  if (nodeName !== undefined) {
    // A Node's name: an RFC 1123 subdomain.
    if (
      nodeName.length > 253 ||
      !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(nodeName)
    )
      throw new UsageError(
        `--node-name must be a lower-case DNS name (RFC 1123 subdomain), got ${JSON.stringify(nodeName)}`,
        'up',
      );
  }
  const installation = values.installation;
  if (installation !== undefined && !INSTALLATION_PATTERN.test(installation)) {
    throw new UsageError(
      `--installation must be lower-case letters, digits and "-", starting with a letter, at most 14 characters, got ${JSON.stringify(installation)}`,
      'up',
    );
  }
  const network: NetworkOptions = {};
  for (const [flag, field] of [
    ['container-cidr', 'containerCidr'],
    ['service-cidr', 'serviceCidr'],
  ] as const) {
    const v = values[flag];
    if (v === undefined) continue;
    try {
      parseCidr(v, `--${flag}`);
    } catch (err) {
      throw new UsageError(errorMessage(err), 'up');
    }
    network[field] = v;
  }
  if (values['cni-conf-dir'] !== undefined)
    network.cniConfDir = resolve(cwd, values['cni-conf-dir']);
  const domain = values['cluster-domain'];
  if (domain !== undefined) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(domain))
      throw new UsageError(
        `--cluster-domain must be a DNS name, got ${JSON.stringify(domain)}`,
        'up',
      );
    network.clusterDomain = domain;
  }
  return {
    help: values.help,
    ...(installation !== undefined ? { installation } : {}),
    ...(Object.keys(network).length ? { network } : {}),
    ...(kubeconfig !== undefined ? { kubeconfig: resolve(cwd, kubeconfig) } : {}),
    ...(inCluster ? { inCluster: {} } : {}),
    ...(nodeName !== undefined ? { nodeName } : {}),
    ...(nodeIp !== undefined ? { nodeIp } : {}),
    ...(buildContext !== undefined ? { buildContext: resolve(cwd, buildContext) } : {}),
    ...(maskText !== undefined ? { nodeCidrMaskSize } : {}),
    ...(nodeLabels !== undefined ? { nodeLabels } : {}),
    concurrency: { Container: concurrency },
    ...(stuckAfter !== undefined ? { stuckAfterMs: stuckSeconds * 1000 } : {}),
    watchDir: resolve(cwd, values.watch ?? DEFAULT_WATCH_DIR),
    stateDir: resolve(cwd, values['state-dir']),
    metricsAddr: values['metrics-addr'],
    logLevel: values.verbose ? 'debug' : 'info',
  };
}

/** `--node-labels K=V,...` (the kubelet's form): each key and value checked as a label's. */
export function parseNodeLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const item of text.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0)
      throw new UsageError(
        `--node-labels takes KEY=VALUE[,KEY=VALUE...], got ${JSON.stringify(item)}`,
        'up',
      );
    const key = item.slice(0, eq);
    if (key in labels) throw new UsageError(`--node-labels: ${key} given twice`, 'up');
    labels[key] = item.slice(eq + 1);
  }
  const errors = checkLabels('--node-labels', labels);
  if (errors.length > 0) throw new UsageError(errors.map(formatFieldError).join('; '), 'up');
  return labels;
}

export async function up(
  argv: string[],
  io: CliIO,
  // Loaded only by `up`, so the other commands start fast, without the reconcilers, the
  // runtime and its native addon.
  load: () => Promise<ManagerModule> = () => import('../manager.js'),
): Promise<number> {
  const args = parseUpArgs(argv, io.cwd);
  if (args.help) {
    io.stdout(UP_USAGE);
    return 0;
  }
  const { watchDir, stateDir, metricsAddr, logLevel, concurrency, installation, network } = args;
  const logger = streamLogger(io.stderr, { debug: logLevel === 'debug', now: io.now });
  const opts: RunControllerOptions = { watchDir, stateDir, metricsAddr, logLevel, logger };
  if (args.kubeconfig !== undefined) opts.kubeconfig = args.kubeconfig;
  if (args.inCluster) opts.inCluster = args.inCluster;
  if (args.nodeName !== undefined) opts.nodeName = args.nodeName;
  if (args.nodeIp !== undefined) opts.nodeIp = args.nodeIp;
  if (args.buildContext !== undefined) opts.buildContext = args.buildContext;
  if (args.nodeCidrMaskSize !== undefined) opts.nodeCidrMaskSize = args.nodeCidrMaskSize;
  if (args.nodeLabels !== undefined) opts.nodeLabels = args.nodeLabels;
  if (concurrency) opts.concurrency = concurrency;
  if (installation !== undefined) opts.installation = installation;
  if (network) opts.network = network;
  if (args.stuckAfterMs !== undefined) opts.stuckAfterMs = args.stuckAfterMs;
  const manager = await load();

  // Listening from before the start, so a signal during startup stops the controller as soon
  // as it is up instead of killing the process half-way through. A second signal exits at once.
  let received: string | undefined;
  let wake: () => void = () => undefined;
  const signalled = new Promise<void>((resolveSignal) => (wake = resolveSignal));
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((name) => {
    const handler = (): void => {
      if (received !== undefined) process.exit(130);
      received = name;
      wake();
    };
    io.signals.on(name, handler);
    return [name, handler] as const;
  });
  try {
    let controller: { stop(): Promise<void> };
    try {
      controller = await manager.runController(opts);
    } catch (err) {
      throw new CliError(`controller failed to start: ${errorMessage(err)}`);
    }
    await signalled;
    io.stderr(`${received ?? 'signal'}: stopping the controller (again to exit at once)\n`);
    await controller.stop();
  } finally {
    for (const [name, handler] of handlers) io.signals.removeListener(name, handler);
  }
  return 0;
}
