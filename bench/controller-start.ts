/**
 * Manifest to Running: how long after a Container manifest lands in the watch directory the
 * container runs, for 1 container and for 100 (one file, 100 documents), against `podman kube
 * play` of the equivalent Pods (1 pod; one file with 100 Pod documents) on the same busybox
 * rootfs. Rounds alternate Conductor and podman (and which goes first), so drift on the machine
 * hits both alike; medians are compared.
 *
 * Networking (--network, default bridge): with `bridge`, every container serves HTTP on 8080
 * (busybox httpd over /etc, so GET /hostname answers 200) on a bridge network — Conductor's
 * (CNI bridge, host-local, portmap, loopback, the harness's own test range) and podman's own
 * (`podman network create` of a subnet of 10.81.0.0/16, made and removed by the bench) — and
 * the clock stops when every container is serving on its port. With `none`, the containers
 * sleep in a network namespace with only `lo` (Conductor `network: none`, podman
 * `--network none`) and the clock stops when they run.
 *
 * Conductor: each round is a fresh in-process controller (ControllerHarness) with the watch dir's
 * own DirectorySource settle time (30 ms, what `conductor up` uses; --settle-ms to change) and
 * default worker counts. The Image is built and Ready before the clock starts; the clock starts
 * just before the manifest is written (temp file + rename) and stops when the last container's
 * persisted status (<state>/objects/containers/<ns>/<name>.json) says phase Running, Ready (with
 * bridge, Ready is a readiness probe, httpGet /hostname on the container's IP from the node as
 * the kubelet's, period 1 s: Running+Ready means serving; the first container's port is checked
 * once more after the round, untimed). The status files are watched with inotify (fs.watch on
 * the namespace directory) and each one is read back on every event; the time taken is after
 * that read, so it is never earlier than the write. A 100 ms poll backs the watch up in case an
 * event is missed (counted and reported).
 *
 * podman: with runc, a private store (--root/--runroot/--tmpdir in a temp dir), the cgroupfs
 * manager. With `none`: the wall time of `podman kube play --network none` returning (it returns
 * once the pods run). With `bridge`: `podman kube play --network NET --ip ...` (a static address
 * per pod, in order, so the bench knows where to look without asking podman), timed until every
 * pod's port answers GET /hostname with 200, polled from when kube play returns (polling
 * earlier would race the pods' veths: an ARP for an address not there yet is retried only after
 * a second). NET is a bridge network of podman's own in a subnet of 10.81.0.0/16 that no route
 * of the host overlaps, with podman's default backend for a fresh store on this host (netavark:
 * its configs in the private store's own network_config_dir, so /etc/cni/net.d is untouched —
 * checked), and no DNS (aardvark-dns: podman is spared the per-container DNS records that
 * Conductor's dnsmasq gets, which is in podman's favour); an `unreachable` route for the
 * subnet (metric 4243, behind the bridge's own) keeps polls on the machine should the bridge be
 * missing. podman also starts an infra (pause) container per pod: that is its model of a Pod,
 * and it is counted; `podman run -d` of one container (no pod) is timed beside it as a
 * reference, the same way. Its pause image is built in the untimed warm-up
 * round.
 *
 * Everything made is removed at the end, also on failure or Ctrl-C (which stops after the
 * current round): harness dirs and containers each round, podman's pods by exact name, its
 * images and private store, and the empty libpod_parent cgroups podman leaves behind; with
 * bridge also podman's network and the guard route, the iptables-nft tables netavark made when
 * they hold only its own (empty) chains, its IPAM database when the bench made it, and
 * ip_forward as it was when no bridge is left on the host.
 *
 *   node build/bench/bench/controller-start.js [--rounds N] [--rounds-many N] [--many N]
 *     [--settle-ms MS] [--network bridge|none] [--skip-podman]
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  rmdirSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import type { Container, Image } from '../controller/api/types.generated.js';
import {
  cidrAddress,
  cidrsOverlap,
  parseCidr,
  type Cidr,
} from '../runtime-core/src/network/ipv4.js';
import { ControllerHarness, busyboxImage, containerManifest } from '../test/fixtures/controller.js';
import { CGROUP_ROOT, findLeaks, hostSnapshot, listMounts } from '../test/fixtures/leaks.js';
import { httpGet } from '../test/fixtures/network.js';
import { busyboxRootfs, uniqueId } from '../test/fixtures/rootfs.js';
import { firstLine, median, parseFlags, positiveFlag, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const positive = (name: string, fallback: number): number => positiveFlag(flags, name, fallback);
const rounds = positive('rounds', 5);
const roundsMany = positive('rounds-many', 2);
const many = positive('many', 100);
const settleMs = flags.has('settle-ms') ? Number(flags.get('settle-ms')) : undefined;
const skipPodman = flags.get('skip-podman') === 'true';
const network = flags.get('network') ?? 'bridge';
if (network !== 'bridge' && network !== 'none')
  throw new Error(`--network must be bridge or none, not ${network}`);
const bridge = network === 'bridge';
/** The issue's target: Conductor at least this many times faster than podman. */
const TARGET = 5;
/** The port every container serves on with bridge, and what answers 200 there. */
const PORT = 8080;
const PATH = '/hostname';
const COMMAND = bridge
  ? ['/bin/httpd', '-f', '-p', String(PORT), '-h', '/etc']
  : ['/bin/sleep', '3600'];

const PREFIX = uniqueId('cbench');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let stop = false;
process.once('SIGINT', () => {
  stop = true;
  console.error('bench: stopping after this round, then cleaning up');
});

interface Sample {
  /** Manifest written → the last container Running (and serving, with bridge). */
  total: number;
  /** podman: when the command returned (with bridge, the ports are polled from then on). */
  returned?: number;
  /** Manifest written → the last object persisted (read, validated, cached: the source's part). */
  observed?: number;
  /**
   * Manifest written → the last container process started (its status.startedAt, from the shim;
   * wall clock, so good to about a millisecond).
   */
  started?: number;
}

// ---------------------------------------------------------------------------------------------
// Conductor

/** Resolves when every named Container's persisted status is Running with condition Ready. */
class RunningWatcher {
  private readonly observed = new Map<string, number>();
  private readonly running = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  /** The last status read of a container not yet Running, for the timeout's message. */
  private last: { name: string; status: unknown } | undefined;
  private readonly watcher;
  private readonly poll: NodeJS.Timeout;
  /** Containers only the backup poll saw Running (the watch missed their last write). */
  polled = 0;
  private finish: ((err?: Error) => void) | undefined;
  t0 = 0;
  /** t0 on the wall clock, for status.startedAt. */
  t0Wall = 0;

  constructor(
    private readonly dir: string,
    private readonly names: string[],
  ) {
    this.watcher = watch(dir, (_event, file) => {
      if (file?.endsWith('.json') && !file.startsWith('.')) void this.check(file.slice(0, -5));
    });
    this.poll = setInterval(() => {
      for (const n of this.names) if (!this.running.has(n)) void this.check(n, true);
    }, 100);
  }

  private async check(name: string, fromPoll = false): Promise<void> {
    if (this.t0 === 0 || this.running.has(name)) return;
    let obj: Container;
    try {
      obj = JSON.parse(await readFile(join(this.dir, `${name}.json`), 'utf8')) as Container;
    } catch {
      return; // not there yet, or replaced while we read: the rename brings another event
    }
    const at = performance.now() - this.t0;
    if (!this.observed.has(name)) this.observed.set(name, at);
    const s = obj.status;
    if (s?.phase === 'Failed' || s?.reason === 'CrashLoopBackOff') {
      this.finish?.(new Error(`${name}: ${s.phase} ${s.reason ?? ''} ${s.message ?? ''}`));
    }
    this.last = { name, status: s };
    const ready = s?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    if (s?.phase !== 'Running' || !ready || this.running.has(name)) return;
    this.running.set(name, at);
    if (s.startedAt) this.startedAt.set(name, Date.parse(s.startedAt) - this.t0Wall);
    if (fromPoll) this.polled++;
    if (this.running.size === this.names.length) this.finish?.();
  }

  wait(timeoutMs: number): Promise<Sample> {
    return new Promise<Sample>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.finish?.(
            new Error(
              `${this.running.size}/${this.names.length} Running after ${timeoutMs} ms; last ` +
                `read: ${this.last?.name ?? 'none'} ${JSON.stringify(this.last?.status)}`,
            ),
          ),
        timeoutMs,
      );
      this.finish = (err) => {
        this.finish = undefined;
        clearTimeout(timer);
        if (err) return reject(err);
        resolve({
          total: Math.max(...this.running.values()),
          observed: Math.max(...this.observed.values()),
          started: Math.max(...this.startedAt.values()),
        });
      };
      if (this.running.size === this.names.length) this.finish();
    });
  }

  close(): void {
    this.watcher.close();
    clearInterval(this.poll);
  }
}

let missedByWatch = 0;

async function conductorRound(namespace: string, n: number): Promise<Sample> {
  const h = await ControllerHarness.create(namespace);
  try {
    await h.start({ settleMs });
    await h.write('image.yaml', busyboxImage(namespace));
    await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready', 60_000);
    // Let the controller go idle (sources.json, events) before the clock starts.
    await sleep(200);
    const names = Array.from({ length: n }, (_, i) => `c${i}`);
    const dir = join(h.stateDir, 'objects', 'containers', namespace);
    await mkdir(dir, { recursive: true });
    const watcher = new RunningWatcher(dir, names);
    try {
      const spec: Record<string, unknown> = bridge
        ? {
            command: COMMAND,
            ports: [{ name: 'http', containerPort: PORT }],
            readinessProbe: { httpGet: { path: PATH, port: 'http' }, periodSeconds: 1 },
          }
        : { command: COMMAND, network: 'none' };
      const text = names.map((name) => containerManifest(namespace, name, spec)).join('\n---\n');
      watcher.t0Wall = Date.now();
      watcher.t0 = performance.now();
      await h.write('containers.yaml', text);
      const sample = await watcher.wait(30_000 + n * 1000);
      missedByWatch += watcher.polled;
      // A "Running" that runs nothing would win: the first container's process must exist.
      const first = await h.object<Container>('Container', 'c0');
      const pid = first?.status?.pid;
      if (pid === undefined || !existsSync(`/proc/${pid}`)) {
        throw new Error(`c0 is Running but its pid ${String(pid)} does not exist`);
      }
      // Ready must mean serving: its port answers (the address is the harness's own range).
      if (bridge) {
        const ip = first?.status?.ip;
        const r = ip ? await httpGet(ip, PORT, PATH) : undefined;
        if (r?.status !== 200)
          throw new Error(`c0 is Ready but ${ip ?? 'no address'}:${PORT}${PATH} gave ${r?.status}`);
      }
      return sample;
    } finally {
      watcher.close();
    }
  } finally {
    await h.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// podman

/** Every cgroup directory at or below libpod_parent, in every hierarchy, parents first. */
function podmanCgroups(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    out.push(dir);
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
    }
  };
  for (const h of readdirSync(CGROUP_ROOT)) {
    const top = join(CGROUP_ROOT, h, 'libpod_parent');
    if (existsSync(top)) walk(top);
  }
  return out;
}

/** The iptables-nft tables (`family name`) present. */
function nftTables(): string[] {
  const r = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().replace(/^table /, ''))
    .filter(Boolean);
}

/**
 * Whether an iptables-nft table holds nothing but netavark's chains and the base chains'
 * jumps to them: what netavark leaves behind once its last network is gone. Anything else
 * (portmap's CNI-* chains, someone's rules) keeps the table.
 */
function onlyNetavark(table: string): boolean {
  const [family = '', name = ''] = table.split(' ');
  const r = spawnSync('nft', ['-j', 'list', 'table', family, name], { encoding: 'utf8' });
  if (r.status !== 0) return false;
  const items = (
    JSON.parse(r.stdout) as {
      nftables?: Record<string, { name?: string; chain?: string; expr?: unknown[] }>[];
    }
  ).nftables;
  const ours = (chain: string | undefined): boolean => chain?.startsWith('NETAVARK') === true;
  const base = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);
  for (const item of items ?? []) {
    const chain = item.chain?.name;
    if (chain !== undefined && !ours(chain) && !base.has(chain)) return false;
    const rule = item.rule;
    if (
      rule &&
      !ours(rule.chain) &&
      !/"(jump|goto)":\{"target":"NETAVARK/.test(JSON.stringify(rule.expr ?? []))
    )
      return false;
  }
  return true;
}

const FORWARD = '/proc/sys/net/ipv4/ip_forward';
/** Metric of the guard route: behind the bridge's own (kernel, 0). */
const GUARD_METRIC = '4243';

/** Polls `GET http://ip:PORT/hostname` until it answers 200 (every 10 ms, bounded). */
async function serving(ip: string, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const r = await httpGet(ip, PORT, PATH, 500).catch(() => undefined);
    if (r?.status === 200) return;
    if (performance.now() > until)
      throw new Error(`${ip}:${PORT}${PATH} not serving after ${timeoutMs} ms`);
    await sleep(10);
  }
}

class Podman {
  /** Short: podman refuses a runroot path longer than 50 characters. */
  readonly dir = `/tmp/${PREFIX}-pm`;
  readonly image = `localhost/conductor-bench-busybox:${PREFIX}`;
  /** podman's bridge network (with --network bridge). */
  readonly networkName = `${PREFIX}-net`;
  private subnet: Cidr | undefined;
  private guardRoute = false;
  private networkMade = false;
  private readonly env: NodeJS.ProcessEnv;
  private readonly base: string[];
  /** Pods made and not yet removed: removed by exact name, even after a failure. */
  private readonly pods = new Set<string>();
  private readonly containers = new Set<string>();
  /**
   * podman (cgroupfs manager) puts pods under libpod_parent/ in every hierarchy, and on this
   * hybrid host leaves one empty cgroup per pod behind in the named `systemd` and `unified`
   * hierarchies. What was there before we started is not ours; the rest is removed at the end.
   */
  private readonly cgroupsBefore = new Set(podmanCgroups());
  /** What netavark changes on the host and leaves: as it was before the bench. */
  private readonly tablesBefore = new Set(nftTables());
  private readonly runContainersBefore = existsSync('/run/containers');
  private readonly ipForwardBefore = readFileSync(FORWARD, 'utf8').trim();
  readonly cniConfBefore = cniConfs();

  constructor(readonly binary: string) {
    mkdirSync(this.dir, { recursive: true });
    const conf = join(this.dir, 'containers.conf');
    // The host's hard nofile limit is 20000: podman's root defaults exceed it. The network
    // configs stay in the private store's directory (never /etc/cni/net.d or /etc/containers).
    writeFileSync(
      conf,
      '[containers]\ndefault_ulimits = ["nofile=20000:20000","nproc=32768:32768"]\n' +
        `[network]\nnetwork_config_dir = "${join(this.dir, 'net.d')}"\n`,
    );
    this.env = { ...process.env, CONTAINERS_CONF: conf };
    this.base = [
      ...['--root', join(this.dir, 'root'), '--runroot', join(this.dir, 'run')],
      ...['--tmpdir', join(this.dir, 'tmp'), '--storage-driver', 'overlay'],
      ...['--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--runtime', 'runc'],
    ];
  }

  run(args: string[], input?: Buffer): string {
    const r = spawnSync(this.binary, [...this.base, ...args], {
      env: this.env,
      encoding: 'utf8',
      stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(input ? { input } : {}),
      maxBuffer: 64 << 20,
    });
    if (r.status !== 0) {
      const why = r.error ? String(r.error) : `exit ${r.status ?? r.signal}`;
      // Its warnings (level=warning) come first: the error is what is not one.
      const said = r.stderr.split('\n').filter((l) => !l.includes('level=warning'));
      throw new Error(
        `podman ${args.slice(0, 2).join(' ')}: ${why}: ${firstLine(said.join('\n'))}`,
      );
    }
    return r.stdout;
  }

  importRootfs(rootfs: string): void {
    const tar = spawnSync('tar', ['-C', rootfs, '-c', '.'], { maxBuffer: 256 << 20 });
    if (tar.status !== 0) throw new Error(`tar: ${firstLine(String(tar.stderr))}`);
    this.run(['import', '-', this.image], tar.stdout);
  }

  /**
   * podman's own bridge network: a /24 of 10.81.0.0/16 that no route of the host overlaps, no
   * DNS, and the unreachable guard route behind it. Returns the backend podman uses.
   */
  createNetwork(): string {
    const routes = (
      JSON.parse(
        spawnSync('ip', ['-j', '-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout,
      ) as { dst: string }[]
    ).flatMap((r) => {
      try {
        return [parseCidr(r.dst.includes('/') ? r.dst : `${r.dst}/32`, 'route')];
      } catch {
        return []; // default, broadcast names
      }
    });
    const start = Math.floor(Math.random() * 250);
    for (let i = 0; i < 250 && !this.subnet; i++) {
      const c = parseCidr(`10.81.${(start + i) % 250}.0/24`, 'subnet');
      if (!routes.some((r) => cidrsOverlap(r, c))) this.subnet = c;
    }
    if (!this.subnet) throw new Error('podman: no free /24 in 10.81.0.0/16');
    this.run([
      'network',
      'create',
      '--subnet',
      this.subnet.text,
      '--disable-dns',
      this.networkName,
    ]);
    this.networkMade = true;
    const r = spawnSync(
      'ip',
      ['route', 'add', 'unreachable', this.subnet.text, 'metric', GUARD_METRIC],
      { encoding: 'utf8' },
    );
    if (r.status !== 0)
      throw new Error(`ip route add unreachable ${this.subnet.text}: ${firstLine(r.stderr)}`);
    this.guardRoute = true;
    return this.run(['info', '--format', '{{.Host.NetworkBackend}}']).trim();
  }

  get subnetText(): string | undefined {
    return this.subnet?.text;
  }

  /** The static address of the `i`th pod of a play (and of the run -d reference: i = 200). */
  private address(i: number): string {
    if (!this.subnet) throw new Error('podman: no network');
    return cidrAddress(this.subnet, 10 + i);
  }

  private networkArgs(ips: string[]): string[] {
    return bridge
      ? ['--network', this.networkName, ...ips.flatMap((ip) => ['--ip', ip])]
      : ['--network', 'none'];
  }

  /** Times the command, then (bridge) every address until it serves. */
  private async timed(args: string[], ips: string[]): Promise<Sample> {
    const t0 = performance.now();
    this.run(args);
    const returned = performance.now() - t0;
    if (!bridge) return { total: returned };
    await Promise.all(ips.map((ip) => serving(ip, 30_000)));
    return { total: performance.now() - t0, returned };
  }

  /** `kube play` of `pods` Pod documents in one file: its wall time, in ms. */
  async play(pods: string[]): Promise<Sample> {
    const file = join(this.dir, `${pods[0] ?? 'pods'}.yaml`);
    // No `ports:` — podman 4.3 publishes a containerPort without hostPort on the host's port.
    writeFileSync(
      file,
      pods
        .map(
          (name) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  containers:
  - name: c
    image: ${this.image}
    command: ${JSON.stringify(COMMAND)}
`,
        )
        .join('---\n'),
    );
    for (const p of pods) this.pods.add(p);
    const ips = bridge ? pods.map((_, i) => this.address(i)) : [];
    const sample = await this.timed(['kube', 'play', ...this.networkArgs(ips), file], ips);
    // Every container must be running (as Conductor's must): not timed.
    const running = new Set(
      this.run(['ps', '--filter', 'status=running', '--format', '{{.Names}}']).split('\n'),
    );
    const missing = pods.filter((p) => !running.has(`${p}-c`));
    if (missing.length > 0) {
      throw new Error(`podman: not running after kube play: ${missing.join(' ')}`);
    }
    return sample;
  }

  /** `podman run -d` of one container, no pod and so no infra container: a reference. */
  runContainer(name: string): Promise<Sample> {
    this.containers.add(name);
    const ips = bridge ? [this.address(200)] : [];
    return this.timed(
      ['run', '-d', ...this.networkArgs(ips), '--name', name, this.image, ...COMMAND],
      ips,
    );
  }

  removeContainers(): void {
    if (this.containers.size === 0) return;
    this.run(['rm', '--force', '--time', '0', ...this.containers]);
    this.containers.clear();
  }

  removePods(): void {
    if (this.pods.size === 0) return;
    this.run(['pod', 'rm', '--force', '--time', '0', ...this.pods]);
    this.pods.clear();
  }

  /**
   * Pods, the network, images, the private store (and its mounts), libpod_parent cgroups we
   * made, and what netavark left on the host.
   */
  destroy(): void {
    const errors: string[] = [];
    const attempt = (f: () => void): void => {
      try {
        f();
      } catch (err) {
        errors.push(String(err));
      }
    };
    attempt(() => this.removePods());
    attempt(() => this.removeContainers());
    if (this.networkMade) attempt(() => this.run(['network', 'rm', '--force', this.networkName]));
    attempt(() => this.run(['rmi', '--force', this.image]));
    // The private store holds only what this run made: the image above and podman's pause image.
    attempt(() => {
      const ids = this.run(['images', '--quiet']).split('\n').filter(Boolean);
      if (ids.length > 0) this.run(['rmi', '--force', ...new Set(ids)]);
    });
    for (const m of listMounts()
      .filter((m) => m.startsWith(`${this.dir}/`))
      .reverse()) {
      attempt(() => {
        const r = spawnSync('umount', [m], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`umount ${m}: ${firstLine(r.stderr)}`);
      });
    }
    attempt(() => rmSync(this.dir, { recursive: true, force: true }));
    // Deepest first; rmdir fails on a cgroup with processes or children: then it is in use.
    for (const cg of podmanCgroups().reverse()) {
      if (this.cgroupsBefore.has(cg)) continue;
      try {
        rmdirSync(cg);
      } catch {
        // not ours to force
      }
    }
    if (this.guardRoute && this.subnet) {
      const r = spawnSync(
        'ip',
        ['route', 'del', 'unreachable', this.subnet.text, 'metric', GUARD_METRIC],
        { encoding: 'utf8' },
      );
      if (r.status !== 0)
        errors.push(`ip route del unreachable ${this.subnet.text}: ${firstLine(r.stderr)}`);
    }
    // netavark's iptables-nft tables (ip nat, ip filter) stay with its empty chains; its IPAM
    // database is under /run/containers; it turns ip_forward on and leaves it.
    for (const t of nftTables()) {
      if (this.tablesBefore.has(t) || !onlyNetavark(t)) continue;
      const [family = '', name = ''] = t.split(' ');
      const r = spawnSync('nft', ['delete', 'table', family, name], { encoding: 'utf8' });
      if (r.status !== 0) errors.push(`nft delete table ${t}: ${firstLine(r.stderr)}`);
    }
    if (!this.runContainersBefore)
      attempt(() => rmSync('/run/containers', { recursive: true, force: true }));
    const bridges = JSON.parse(
      spawnSync('ip', ['-j', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' }).stdout ||
        '[]',
    ) as unknown[];
    if (bridges.length === 0 && readFileSync(FORWARD, 'utf8').trim() !== this.ipForwardBefore)
      attempt(() => writeFileSync(FORWARD, this.ipForwardBefore));
    if (errors.length > 0) console.error(`bench: podman cleanup:\n  ${errors.join('\n  ')}`);
  }
}

/** /etc/cni/net.d's files: podman must leave them as they were. */
function cniConfs(): string[] {
  try {
    return readdirSync('/etc/cni/net.d').sort();
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------

interface Series {
  conductor: Sample[];
  podman: Sample[];
  /** `podman run -d` (1-container series only). */
  podmanRun: Sample[];
  podmanFailed?: string;
}

async function series(
  label: string,
  n: number,
  count: number,
  podman: Podman | undefined,
  warmup: boolean,
): Promise<Series> {
  const out: Series = { conductor: [], podman: [], podmanRun: [] };
  for (let r = warmup ? -1 : 0; r < count && !stop; r++) {
    const tag = r < 0 ? 'w' : String(r);
    const round = `${label}${tag}`;
    const conductor = async (): Promise<void> => {
      const s = await conductorRound(`${PREFIX}-${round}`, n);
      if (r >= 0) out.conductor.push(s);
      console.log(
        `  round ${tag} conductor: ${s.total.toFixed(1)} ms (objects persisted at ` +
          `${s.observed?.toFixed(1) ?? '?'} ms, last process started at ` +
          `${s.started?.toFixed(0) ?? '?'} ms)`,
      );
    };
    const returned = (s: Sample): string =>
      s.returned !== undefined ? ` (command returned at ${s.returned.toFixed(1)} ms)` : '';
    const pod = async (): Promise<void> => {
      if (!podman || out.podmanFailed) return;
      try {
        const names = Array.from({ length: n }, (_, i) => `${PREFIX}-${round}-p${i}`);
        const s = await podman.play(names);
        if (r >= 0) out.podman.push(s);
        console.log(`  round ${tag} podman:    ${s.total.toFixed(1)} ms${returned(s)}`);
        if (n === 1) {
          const one = await podman.runContainer(`${PREFIX}-${round}-run`);
          if (r >= 0) out.podmanRun.push(one);
          console.log(
            `  round ${tag} podman run -d (reference): ${one.total.toFixed(1)} ms${returned(one)}`,
          );
        }
      } catch (err) {
        out.podmanFailed = String(err);
        console.log(`  round ${tag} podman failed: ${out.podmanFailed}`);
      } finally {
        podman.removePods();
        podman.removeContainers();
      }
    };
    // Alternate who goes first: whoever follows the other's teardown pays for it.
    if ((r + 1) % 2 === 0) {
      await conductor();
      await pod();
    } else {
      await pod();
      await conductor();
    }
  }
  return out;
}

async function main(): Promise<void> {
  const before = hostSnapshot();
  const rootfs = await busyboxRootfs();
  const podmanBinary = skipPodman ? undefined : which('podman');
  let podman: Podman | undefined;
  let podmanError: string | undefined = skipPodman ? 'skipped (--skip-podman)' : undefined;
  let podmanNet = '--network none';
  try {
    if (podmanBinary) {
      try {
        podman = new Podman(podmanBinary);
        podman.importRootfs(rootfs);
        if (bridge) {
          const backend = podman.createNetwork();
          podmanNet = `its own bridge network ${podman.subnetText ?? ''}, ${backend}`;
        }
      } catch (err) {
        podmanError = String(err);
      }
    } else podmanError ??= 'podman not found';

    console.log(
      `manifest → ${bridge ? `Running and serving on :${PORT} (bridge)` : 'Running (network none)'}: ` +
        `Conductor (in-process controller, settle ${settleMs ?? 30} ms) vs podman kube play ` +
        `(runc, ${podmanNet}); load average ${loadavg()[0]?.toFixed(2)} on ${cpus().length} cores`,
    );
    console.log(`1 container, ${rounds} rounds (+1 warm-up):`);
    const one = await series('a', 1, rounds, podmanError ? undefined : podman, true);
    console.log(`${many} containers in one file, ${roundsMany} rounds:`);
    const lots = await series('b', many, roundsMany, podmanError ? undefined : podman, false);

    const rows: string[][] = [
      [
        '',
        'conductor ms',
        '(persisted',
        'started)',
        'podman ms',
        ...(bridge ? ['(returned)'] : []),
        'podman / conductor',
        'target',
      ],
    ];
    for (const [name, s] of [
      ['1 container', one],
      [`${many} containers`, lots],
    ] as const) {
      const c = median(s.conductor.map((x) => x.total));
      const o = median(s.conductor.map((x) => x.observed ?? NaN));
      const st = median(s.conductor.map((x) => x.started ?? NaN));
      const p = median(s.podman.map((x) => x.total));
      const pr = median(s.podman.map((x) => x.returned ?? NaN));
      const failed = podmanError ?? s.podmanFailed;
      const ratio = p / c;
      rows.push([
        name,
        c.toFixed(1),
        o.toFixed(1),
        st.toFixed(0),
        failed ? 'failed' : p.toFixed(1),
        ...(bridge ? [failed ? '-' : pr.toFixed(1)] : []),
        failed ? '-' : `${ratio.toFixed(1)}x`,
        failed ? '-' : `${TARGET}x ${ratio >= TARGET ? 'met' : 'NOT met'}`,
      ]);
    }
    console.log(`medians:\n${table(rows)}`);
    const notes = [
      'podman / conductor: how many times faster Conductor is (higher is better for Conductor).',
      'persisted: when the last object file appeared (inotify, settle, parse, validate, write);',
      'started: when the last container process started (status.startedAt, from the shim);',
      bridge
        ? 'conductor ms: when the last status file said Running and Ready (readiness probe ' +
          `GET ${PATH} on :${PORT}, period 1 s: a probe that finds the port not yet open ` +
          'retries a second later).'
        : 'conductor ms: when the last status file said Running (what the CLI and Services see).',
      ...(bridge
        ? [
            `podman ms: until every pod's :${PORT}${PATH} answered 200, polled every 10 ms from`,
            'when the command returned (returned: kube play / run -d alone).',
          ]
        : []),
    ];
    if (one.podmanRun.length > 0) {
      const pr = median(one.podmanRun.map((x) => x.total));
      const c = median(one.conductor.map((x) => x.total));
      notes.push(
        `reference: podman run -d of 1 container (no pod, no infra container): median ` +
          `${pr.toFixed(1)} ms, ${(pr / c).toFixed(1)}x Conductor's time.`,
      );
    }
    if (podmanError) notes.push(`podman: ${podmanError}`);
    for (const s of [one, lots]) if (s.podmanFailed) notes.push(`podman: ${s.podmanFailed}`);
    if (missedByWatch > 0) {
      notes.push(
        `${missedByWatch} Running status(es) were read first by the 100 ms backup poll ` +
          '(at worst 100 ms late; usually a watch-triggered read was in flight too).',
      );
    }
    notes.push(`load average after: ${loadavg()[0]?.toFixed(2)}.`);
    console.log(notes.join('\n'));
  } finally {
    podman?.destroy();
    if (podman && cniConfs().join(' ') !== podman.cniConfBefore.join(' ')) {
      console.error(
        `bench: /etc/cni/net.d changed: was [${podman.cniConfBefore.join(' ')}], now ` +
          `[${cniConfs().join(' ')}]`,
      );
    }
    const leaks = findLeaks(before, { idPrefix: PREFIX, runtimeRoots: [] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    if (left.length > 0) console.error(`bench: left behind:\n  ${left.join('\n  ')}`);
  }
}

await main();
