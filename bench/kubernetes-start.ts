/**
 * Kubernetes mode against directory mode, in the same run: how long from `kubectl apply` of 1
 * and of 100 Container manifests to their status Running and Ready written back to the API
 * server, beside the same manifests landing in a watch directory (temp file + rename) to their
 * persisted status Running and Ready — the target is Kubernetes mode within 1.5x of
 * directory mode. Then how many API requests the agent makes per Container it brings up, and
 * the agent's memory with 100 Containers watched.
 *
 * Both modes run the controller as users run it, `conductor up` as its own process (the
 * compiled CLI: `hack/bench.sh` builds dist/ first), a fresh one on a fresh state dir each
 * round: `--watch DIR`, or `--kubeconfig` of a real kube-apiserver and etcd
 * (hack/control-plane.sh, on 127.0.0.1, in a directory of the bench's own). The manifests are
 * the same both ways: an Image `busybox` from a local registry (the busybox fixture image
 * pushed to a docker-registry on 127.0.0.1: an API object has no manifest directory to copy a
 * rootfs from, so the watch directory uses the registry too), built and Ready before the clock
 * starts, and N Containers serving HTTP on a bridge network with a readiness probe, as
 * controller-start.ts's (busybox httpd on 8080, httpGet /hostname every second): Running and
 * Ready means serving. Rounds alternate the modes and which goes first.
 *
 * Kubernetes mode's clock starts before `kubectl apply -f FILE` (N documents in one file) is
 * spawned and stops when a watch of the namespace's Containers (opened by the bench before the
 * clock starts) has seen every one Running with Ready True; kubectl's own time is in it, as it
 * is in what a user waits for. Directory mode's stops when the last status file in the state
 * dir says Running and Ready (inotify, with a 100 ms poll behind it).
 *
 * API requests per Container: one more round of each size for Kubernetes mode, untimed, with
 * the agent's kubeconfig pointing at a counting proxy (test/fixtures/api-proxy.ts: plain HTTP to
 * the agent, TLS with the admin certificate to the API server; kubectl goes direct, so only the
 * agent's requests are counted), from the apply until every Container is Running and Ready,
 * and until 3 s later (events and probe-driven status writes that follow), by kind of request.
 *
 * Memory: the agent's (and, for comparison, the directory controller's) VmRSS and VmHWM from
 * /proc/PID/status, 3 s after the last of 100 Containers is Running and Ready.
 *
 * Between rounds: the controller is stopped (SIGTERM), what it made on the host is removed
 * (RuntimeCore.removeAll, as `conductor down`), and in Kubernetes mode the round's objects are
 * deleted with their finalizers dropped (the agent is gone, and the next round's agent watches
 * every namespace). At the end the control plane and the registry go, and the host is checked
 * for leaks.
 *
 *   node build/bench/bench/kubernetes-start.js [--rounds N] [--rounds-many N] [--many N]
 *     [--skip-count]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, watch } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import {
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
} from '@kubernetes/client-node';

import type { Container, Image } from '../controller/api/types.generated.js';
import { ApiProxy, type ProxiedRequest } from '../test/fixtures/api-proxy.js';
import { ControlPlane } from '../test/fixtures/control-plane.js';
import { removeHostState, testNetwork } from '../test/fixtures/controller.js';
import { busyboxImage, pushImage } from '../test/fixtures/images.js';
import { findLeaks, hostSnapshot } from '../test/fixtures/leaks.js';
import { httpGet } from '../test/fixtures/network.js';
import { startRegistry, type Registry } from '../test/fixtures/registry.js';
import { FIXTURE_ROOT, uniqueId } from '../test/fixtures/rootfs.js';
import { median, parseFlags, positiveFlag, repoRoot, table } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const positive = (name: string, fallback: number): number => positiveFlag(flags, name, fallback);
const rounds = positive('rounds', 5);
const roundsMany = positive('rounds-many', 2);
const many = positive('many', 100);
const skipCount = flags.get('skip-count') === 'true';
/** The target: Kubernetes mode at most this many times directory mode's time. */
const TARGET = 1.5;
const PORT = 8080;
const PATH = '/hostname';
/** After the last Running: events and status writes that follow are counted until then. */
const SETTLE_MS = 3000;

const ROOT = repoRoot();
const PREFIX = uniqueId('kbench');
const GROUP = 'conductor.dev';
const VERSION = 'v1alpha1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let stop = false;
process.once('SIGINT', () => {
  stop = true;
  console.error('bench: stopping after this round, then cleaning up');
});

type Mode = 'directory' | 'kubernetes';

interface Sample {
  /** Manifest written / kubectl apply started → the last Container Running and Ready. */
  total: number;
  /** kubectl apply returned (Kubernetes mode). */
  applied?: number;
  /** The first object on the server (the bench's watch saw it ADDED) → the last Ready. */
  fromServer?: number;
  /** CPU seconds used from the clock's start to the last Ready, by process. */
  cpu?: Record<string, number>;
}

interface Memory {
  rssKiB: number;
  hwmKiB: number;
  /** VmRSS once started, the Image Ready, before the Containers. */
  idleKiB: number;
}

/** VmRSS and VmHWM of a process, in KiB. */
function memoryOf(pid: number): { rssKiB: number; hwmKiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

const NO_MEMORY: Memory = { rssKiB: NaN, hwmKiB: NaN, idleKiB: NaN };

const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux

/**
 * CPU seconds a process has used (utime + stime), and with `children` those of its children
 * it has waited for (the CNI plugins, mounts and runtimes the controller runs).
 */
function cpuSeconds(pid: number, children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 after the command name.
  const ticks = (f[11] ?? 0) + (f[12] ?? 0) + (children ? (f[13] ?? 0) + (f[14] ?? 0) : 0);
  return ticks / CLOCK_TICKS;
}

/** CPU seconds of each named process between two readings. */
function cpuDelta(pids: Record<string, [number, boolean]>): () => Record<string, number> {
  const start = Object.fromEntries(
    Object.entries(pids).map(([k, [pid, c]]) => [k, cpuSeconds(pid, c)]),
  );
  return () =>
    Object.fromEntries(
      Object.entries(pids).map(([k, [pid, c]]) => [k, cpuSeconds(pid, c) - (start[k] ?? 0)]),
    );
}

function imageManifest(namespace: string, registry: Registry): Record<string, unknown> {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'Image',
    metadata: { name: 'busybox', namespace },
    spec: { from: `${registry.host}/${PREFIX}/busybox:1`, registry: { tlsVerify: false } },
  };
}

function containerManifest(namespace: string, name: string): Record<string, unknown> {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'Container',
    metadata: { name, namespace },
    spec: {
      image: 'busybox',
      command: ['/bin/httpd', '-f', '-p', String(PORT), '-h', '/etc'],
      ports: [{ name: 'http', containerPort: PORT }],
      readinessProbe: { httpGet: { path: PATH, port: 'http' }, periodSeconds: 1 },
      terminationGracePeriodSeconds: 1,
    },
  };
}

const isRunningReady = (c: Container | undefined): boolean =>
  c?.status?.phase === 'Running' &&
  c.status.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') === true;

/** `conductor up ARGS` as its own process, resolved once it has started (its log says so). */
async function conductorUp(args: string[]): Promise<{ child: ChildProcess; log: () => string }> {
  let log = '';
  const child = spawn(process.execPath, ['bin/conductor.js', 'up', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const until = performance.now() + 120_000;
  while (!log.includes('controller started')) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`conductor up exited (${child.exitCode ?? child.signalCode}):\n${log}`);
    if (performance.now() > until) throw new Error(`conductor up did not start:\n${log}`);
    await sleep(20);
  }
  return { child, log: () => log };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

/** What the controller made on the host: gone (`conductor down`). */

/** The first container's port must answer: Running and Ready means serving. */
async function checkServing(c: Container | undefined): Promise<void> {
  const ip = c?.status?.ip;
  const r = ip ? await httpGet(ip, PORT, PATH) : undefined;
  if (r?.status !== 200)
    throw new Error(
      `${c?.metadata.name ?? '?'} is Ready but ${ip ?? 'no address'}:${PORT}${PATH} gave ${r?.status}`,
    );
}

// ---------------------------------------------------------------------------------------------
// directory mode

/** Resolves when every named Container's status file says Running and Ready. */
function statusFilesReady(
  dir: string,
  names: string[],
  t0: number,
  timeoutMs: number,
): Promise<number> {
  const done = new Set<string>();
  return new Promise<number>((resolve, reject) => {
    let last = 0;
    const check = async (name: string): Promise<void> => {
      if (done.has(name)) return;
      let c: Container;
      try {
        c = JSON.parse(await readFile(join(dir, `${name}.json`), 'utf8')) as Container;
      } catch {
        return;
      }
      if (!isRunningReady(c) || done.has(name)) return;
      done.add(name);
      last = performance.now() - t0;
      if (done.size === names.length) finish();
    };
    const watcher = watch(dir, (_e, file) => {
      if (file?.endsWith('.json') && !file.startsWith('.')) void check(file.slice(0, -5));
    });
    const poll = setInterval(() => {
      for (const n of names) void check(n);
    }, 100);
    const timer = setTimeout(
      () => finish(new Error(`${done.size}/${names.length} Ready after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (err?: Error): void => {
      watcher.close();
      clearInterval(poll);
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(last);
    };
  });
}

async function directoryRound(
  round: string,
  n: number,
  registry: Registry,
): Promise<{ sample: Sample; memory: Memory }> {
  const ns = `${PREFIX}-${round}`;
  const base = mkdtempSync(join(FIXTURE_ROOT, `${ns}-`));
  const watchDir = join(base, 'watch');
  const stateDir = join(base, 'state');
  const network = testNetwork();
  await mkdir(watchDir, { recursive: true });
  let up: Awaited<ReturnType<typeof conductorUp>> | undefined;
  const write = async (file: string, text: string): Promise<void> => {
    await writeFile(join(watchDir, `.${file}.tmp`), text);
    await rename(join(watchDir, `.${file}.tmp`), join(watchDir, file));
  };
  try {
    up = await conductorUp([
      ...['--watch', watchDir, '--state-dir', stateDir, '--metrics-addr', '127.0.0.1:0'],
      ...[
        '--container-cidr',
        network.containerCidr ?? '',
        '--service-cidr',
        network.serviceCidr ?? '',
      ],
    ]);
    await write('image.yaml', JSON.stringify(imageManifest(ns, registry)));
    const imageFile = join(stateDir, 'objects', 'images', ns, 'busybox.json');
    const until = performance.now() + 60_000;
    for (;;) {
      const img = existsSync(imageFile)
        ? (JSON.parse(readFileSync(imageFile, 'utf8')) as Image)
        : undefined;
      if (img?.status?.phase === 'Ready') break;
      if (performance.now() > until)
        throw new Error(`Image not Ready: ${JSON.stringify(img?.status)}\n${up.log()}`);
      await sleep(20);
    }
    await sleep(200); // idle before the clock starts
    const idleKiB = memoryOf(up.child.pid ?? 0).rssKiB;
    const names = Array.from({ length: n }, (_, i) => `c${i}`);
    const dir = join(stateDir, 'objects', 'containers', ns);
    await mkdir(dir, { recursive: true });
    const text = names.map((name) => JSON.stringify(containerManifest(ns, name))).join('\n---\n');
    const cpu = cpuDelta({ controller: [up.child.pid ?? 0, true] });
    const t0 = performance.now();
    const ready = statusFilesReady(dir, names, t0, 30_000 + n * 1000);
    await write('containers.yaml', text);
    const total = await ready;
    const used = cpu();
    await checkServing(JSON.parse(await readFile(join(dir, 'c0.json'), 'utf8')) as Container);
    let memory = NO_MEMORY;
    if (n > 1) {
      await sleep(SETTLE_MS);
      memory = { ...memoryOf(up.child.pid ?? 0), idleKiB };
    }
    return { sample: { total, cpu: used }, memory };
  } finally {
    if (up) await stopProcess(up.child);
    await removeHostState(stateDir, network);
    rmSync(base, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes mode

class Cluster {
  readonly kc = new KubeConfig();
  readonly api: CustomObjectsApi;
  constructor(readonly cp: ControlPlane) {
    this.kc.loadFromFile(cp.kubeconfig);
    this.api = this.kc.makeApiClient(CustomObjectsApi);
  }

  /** Resolves with the time the last of `names` was seen Running and Ready (since t0). */
  async watchReady(
    ns: string,
    names: string[],
    timeoutMs: number,
  ): Promise<{
    started: () => void;
    ready: Promise<number>;
    t0: () => number;
    firstAdded: () => number;
  }> {
    const list = (await this.api.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: 'containers',
    })) as {
      metadata?: { resourceVersion?: string };
    };
    const want = new Set(names);
    const done = new Set<string>();
    let t0 = 0;
    let last = 0;
    let firstAdded = NaN;
    const watching: { abort?: AbortController } = {};
    let settle: { resolve: (ms: number) => void; reject: (err: Error) => void } | undefined;
    const ready = new Promise<number>((resolve, reject) => (settle = { resolve, reject }));
    // Awaited by the round later; a failure before that must not end the process unhandled
    // (skipping the rounds' clean-up of the host).
    ready.catch(() => undefined);
    const timer = setTimeout(
      () => finish(new Error(`${done.size}/${names.length} Ready after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      watching.abort?.abort();
      if (err) settle?.reject(err);
      else settle?.resolve(last);
    };
    watching.abort = await new Watch(this.kc).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/containers`,
      { resourceVersion: list.metadata?.resourceVersion ?? '', allowWatchBookmarks: true },
      (type: string, obj: Container) => {
        const name = obj.metadata?.name ?? '';
        if (type === 'ADDED' && want.has(name) && Number.isNaN(firstAdded))
          firstAdded = performance.now() - t0;
        if (type === 'BOOKMARK' || !want.has(name) || done.has(name) || !isRunningReady(obj))
          return;
        done.add(name);
        last = performance.now() - t0;
        if (done.size === names.length) finish();
      },
      (err: unknown) => {
        if (done.size < names.length) finish(new Error(`the watch ended: ${String(err)}`));
      },
    );
    return {
      started: () => (t0 = performance.now()),
      ready,
      t0: () => t0,
      firstAdded: () => firstAdded,
    };
  }

  /** The round's objects deleted, their finalizers dropped (no agent runs to release them). */
  async removeAll(ns: string): Promise<void> {
    for (const plural of ['containers', 'services', 'images']) {
      const list = (await this.api.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural,
      })) as {
        items: { metadata: { name: string } }[];
      };
      const names = list.items.map((o) => o.metadata.name);
      for (let i = 0; i < names.length; i += 20)
        await Promise.all(
          names.slice(i, i + 20).map(async (name) => {
            await this.api.patchNamespacedCustomObject(
              {
                group: GROUP,
                version: VERSION,
                namespace: ns,
                plural,
                name,
                body: { metadata: { finalizers: null } },
              },
              setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
            );
            await this.api.deleteNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: ns,
              plural,
              name,
            });
          }),
        );
    }
  }
}

interface KubernetesRound {
  sample: Sample;
  memory: Memory;
  /** With a proxy: the agent's requests from the apply until Ready, and until SETTLE_MS after. */
  requests?: { untilReady: ProxiedRequest[]; withSettle: ProxiedRequest[] };
}

async function kubernetesRound(
  round: string,
  n: number,
  cluster: Cluster,
  registry: Registry,
  proxy?: ApiProxy,
): Promise<KubernetesRound> {
  const ns = `${PREFIX}-${round}`;
  const base = mkdtempSync(join(FIXTURE_ROOT, `${ns}-`));
  const stateDir = join(base, 'state');
  const network = testNetwork();
  const kubeconfig = proxy
    ? proxy.writeKubeconfig(join(base, 'proxy.kubeconfig'))
    : cluster.cp.kubeconfig;
  let up: Awaited<ReturnType<typeof conductorUp>> | undefined;
  try {
    await cluster.cp.kubectl(['create', 'namespace', ns]);
    // The one node holds the whole /24 as the directory controller does: a node's part would
    // be a quarter of it by default, 62 addresses, fewer than the 100 containers.
    const prefix = (network.containerCidr ?? '').split('/')[1] ?? '24';
    up = await conductorUp([
      ...['--kubeconfig', kubeconfig, '--node-name', `node-${PREFIX}`, '--state-dir', stateDir],
      ...['--metrics-addr', '127.0.0.1:0'],
      ...[
        '--container-cidr',
        network.containerCidr ?? '',
        '--service-cidr',
        network.serviceCidr ?? '',
        '--node-cidr-mask-size',
        prefix,
      ],
    ]);
    await cluster.cp.kubectl(['apply', '-f', '-'], JSON.stringify(imageManifest(ns, registry)));
    const until = performance.now() + 60_000;
    for (;;) {
      const img = (await cluster.api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: 'images',
        name: 'busybox',
      })) as Image;
      if (img.status?.phase === 'Ready') break;
      if (performance.now() > until)
        throw new Error(`Image not Ready: ${JSON.stringify(img.status)}\n${up.log()}`);
      await sleep(50);
    }
    await sleep(200);
    const idleKiB = memoryOf(up.child.pid ?? 0).rssKiB;
    const names = Array.from({ length: n }, (_, i) => `c${i}`);
    const file = join(base, 'containers.yaml');
    await writeFile(
      file,
      names.map((name) => JSON.stringify(containerManifest(ns, name))).join('\n---\n'),
    );
    const w = await cluster.watchReady(ns, names, 30_000 + n * 1000);
    const cpu = cpuDelta({
      controller: [up.child.pid ?? 0, true],
      'kube-apiserver': [cluster.cp.pid('kube-apiserver'), false],
      etcd: [cluster.cp.pid('etcd'), false],
    });
    const wall0 = Date.now();
    w.started();
    const applied = cluster.cp
      .kubectl(['apply', '-f', file])
      .then(() => performance.now() - w.t0());
    const total = await w.ready;
    const used = cpu();
    const sample: Sample = {
      total,
      applied: await applied,
      fromServer: total - w.firstAdded(),
      cpu: used,
    };
    const wallReady = wall0 + total;
    await checkServing(
      (await cluster.api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: 'containers',
        name: 'c0',
      })) as Container,
    );
    let memory = NO_MEMORY;
    if (n > 1 || proxy) await sleep(SETTLE_MS);
    if (n > 1) memory = { ...memoryOf(up.child.pid ?? 0), idleKiB };
    const requests = proxy
      ? {
          untilReady: proxy.requests.filter((r) => r.at >= wall0 && r.at <= wallReady),
          withSettle: proxy.requests.filter((r) => r.at >= wall0 && r.at <= wallReady + SETTLE_MS),
        }
      : undefined;
    return { sample, memory, ...(requests ? { requests } : {}) };
  } finally {
    if (up) await stopProcess(up.child);
    await removeHostState(stateDir, network);
    await cluster
      .removeAll(ns)
      .catch((err: unknown) => console.error(`bench: removing ${ns}'s objects: ${String(err)}`));
    rmSync(base, { recursive: true, force: true });
  }
}

/** A request of the agent, by what it is for. */
function requestKind(r: ProxiedRequest): string {
  const p = r.path;
  if (r.watch) return 'watch';
  if (/\/events(\/|$)/.test(p))
    return r.method === 'POST' ? 'event create' : `event ${r.method.toLowerCase()}`;
  if (p.endsWith('/status')) return `status ${r.method.toLowerCase()}`;
  if (r.method === 'PATCH') return 'metadata patch (finalizer)';
  if (r.method === 'GET') return /\/namespaces\/[^/]+\/[^/]+\/[^/]+$/.test(p) ? 'get' : 'list';
  return r.method.toLowerCase();
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const before = hostSnapshot();
  const base = mkdtempSync(join(FIXTURE_ROOT, `${PREFIX}-`));
  let cp: ControlPlane | undefined;
  let registry: Registry | undefined;
  let proxy: ApiProxy | undefined;
  try {
    const t = performance.now();
    cp = await ControlPlane.up(join(base, 'control-plane'));
    await cp.applyCrds();
    registry = await startRegistry({ prefix: PREFIX });
    await pushImage(await busyboxImage(), registry, `${PREFIX}/busybox:1`);
    const cluster = new Cluster(cp);
    console.log(
      `kubectl apply → Running and Ready (status written back to kube-apiserver) vs the same ` +
        `manifests in a watch directory; each mode a fresh \`conductor up\` process per round; ` +
        `control plane and registry up in ${((performance.now() - t) / 1000).toFixed(1)} s; ` +
        `load average ${loadavg()[0]?.toFixed(2)} on ${cpus().length} cores`,
    );

    const series = async (label: string, n: number, count: number, warmup: boolean) => {
      const out: Record<Mode, Sample[]> = { directory: [], kubernetes: [] };
      const memory: Record<Mode, Memory[]> = { directory: [], kubernetes: [] };
      for (let r = warmup ? -1 : 0; r < count && !stop; r++) {
        const tag = r < 0 ? 'w' : String(r);
        const dir = async (): Promise<void> => {
          const { sample, memory: m } = await directoryRound(
            `${label}${tag}d`,
            n,
            registry as Registry,
          );
          if (r >= 0) {
            out.directory.push(sample);
            memory.directory.push(m);
          }
          console.log(`  round ${tag} directory:  ${sample.total.toFixed(1)} ms`);
        };
        const kube = async (): Promise<void> => {
          const { sample, memory: m } = await kubernetesRound(
            `${label}${tag}k`,
            n,
            cluster,
            registry as Registry,
          );
          if (r >= 0) {
            out.kubernetes.push(sample);
            memory.kubernetes.push(m);
          }
          console.log(
            `  round ${tag} kubernetes: ${sample.total.toFixed(1)} ms (kubectl apply returned at ${sample.applied?.toFixed(1) ?? '?'} ms)`,
          );
        };
        // Alternate who goes first: whoever follows the other's teardown pays for it.
        if ((r + 1) % 2 === 0) {
          await dir();
          await kube();
        } else {
          await kube();
          await dir();
        }
      }
      return { out, memory };
    };

    console.log(`1 container, ${rounds} rounds (+1 warm-up):`);
    const one = await series('a', 1, rounds, true);
    console.log(`${many} containers in one file, ${roundsMany} rounds:`);
    const lots = await series('b', many, roundsMany, false);

    const rows: string[][] = [
      [
        '',
        'directory ms',
        'kubernetes ms',
        '(kubectl returned',
        'from the server)',
        'kubernetes / directory',
        'target',
      ],
    ];
    for (const [name, s] of [
      ['1 container', one],
      [`${many} containers`, lots],
    ] as const) {
      const d = median(s.out.directory.map((x) => x.total));
      const k = median(s.out.kubernetes.map((x) => x.total));
      const a = median(s.out.kubernetes.map((x) => x.applied ?? NaN));
      const f = median(s.out.kubernetes.map((x) => x.fromServer ?? NaN));
      const ratio = k / d;
      rows.push([
        name,
        d.toFixed(1),
        k.toFixed(1),
        a.toFixed(1),
        f.toFixed(1),
        `${ratio.toFixed(2)}x`,
        `≤ ${TARGET}x ${ratio <= TARGET ? 'met' : 'NOT met'}`,
      ]);
    }
    console.log(`medians:\n${table(rows)}`);

    const mib = (kib: number): string => (kib / 1024).toFixed(1);
    const memRows: string[][] = [
      ['memory (medians)', 'idle RSS MiB', `${many} containers: RSS MiB`, 'peak RSS MiB'],
    ];
    for (const mode of ['kubernetes', 'directory'] as const) {
      const m = lots.memory[mode];
      memRows.push([
        mode === 'kubernetes'
          ? 'agent (conductor up --kubeconfig)'
          : 'controller (conductor up --watch)',
        mib(median(m.map((x) => x.idleKiB))),
        mib(median(m.map((x) => x.rssKiB))),
        mib(median(m.map((x) => x.hwmKiB))),
      ]);
    }
    console.log(table(memRows));

    // Where the CPU went while 100 came up (2 cores are shared by all of it).
    const cpuRows: string[][] = [
      [`CPU s while ${many} came up (medians)`, 'directory', 'kubernetes'],
    ];
    for (const [label, key, modes] of [
      ['controller or agent, with the programs it ran', 'controller', ['directory', 'kubernetes']],
      ['kube-apiserver', 'kube-apiserver', ['kubernetes']],
      ['etcd', 'etcd', ['kubernetes']],
    ] as const) {
      const cell = (mode: Mode): string =>
        (modes as readonly Mode[]).includes(mode)
          ? median(lots.out[mode].map((x) => x.cpu?.[key] ?? NaN)).toFixed(2)
          : '-';
      cpuRows.push([label, cell('directory'), cell('kubernetes')]);
    }
    console.log(table(cpuRows));

    if (!skipCount && !stop) {
      proxy = await ApiProxy.start({ upstream: cp.server(), ...cp.adminTls() });
      const counted: string[][] = [
        ['agent requests per Container brought up', '1 container', `${many} containers`],
      ];
      const perKind: Map<string, [number, number]> = new Map();
      const totals: [number, number, number, number] = [0, 0, 0, 0];
      for (const [i, n] of [1, many].entries()) {
        const r = await kubernetesRound(`c${n}`, n, cluster, registry, proxy);
        const { untilReady = [], withSettle = [] } = r.requests ?? {};
        totals[i * 2] = untilReady.length / n;
        totals[i * 2 + 1] = withSettle.length / n;
        for (const q of withSettle) {
          const k = requestKind(q);
          const v = perKind.get(k) ?? [0, 0];
          v[i] = (v[i] ?? 0) + 1 / n;
          perKind.set(k, v);
        }
        console.log(
          `  counted round, ${n} container(s): ${r.sample.total.toFixed(1)} ms through the proxy (untimed)`,
        );
      }
      counted.push([
        'until the last is Running and Ready',
        totals[0].toFixed(1),
        totals[2].toFixed(1),
      ]);
      counted.push([
        `and in the ${SETTLE_MS / 1000} s after`,
        totals[1].toFixed(1),
        totals[3].toFixed(1),
      ]);
      for (const [k, v] of [...perKind.entries()].sort())
        counted.push([`  ${k}`, (v[0] ?? 0).toFixed(2), (v[1] ?? 0).toFixed(2)]);
      console.log(table(counted));
    }

    const notes = [
      "kubernetes / directory: how many times directory mode's time Kubernetes mode takes (lower is better; the target is at most 1.5x).",
      'kubectl returned: when `kubectl apply` exited (it reads and creates the objects one after another).',
      "from the server: from when the first object existed on the API server (the bench's watch saw it ADDED) to the last Ready: the agent's part.",
      `memory: VmRSS once started with the Image Ready (idle), ${SETTLE_MS / 1000} s after the last of ${many} Containers was Ready, and VmHWM (peak).`,
      'Both clocks stop on status Running with Ready True (readiness probe GET /hostname on :8080, period 1 s), read from the API (a watch) or from the state dir.',
      `load average after: ${loadavg()[0]?.toFixed(2)}.`,
    ];
    console.log(notes.join('\n'));
  } finally {
    await proxy?.stop();
    await registry?.stop();
    await cp?.down();
    rmSync(base, { recursive: true, force: true });
    const leaks = findLeaks(before, { idPrefix: PREFIX, runtimeRoots: [] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    if (left.length > 0) console.error(`bench: left behind:\n  ${left.join('\n  ')}`);
  }
}

await main();
