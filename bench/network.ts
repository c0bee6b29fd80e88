/**
 * Networking: the data path through a Service and published ports against the container's own
 * address, and a container's network set-up and tear-down against bare CNI ADD/DEL — each
 * compared with its peer measured in the same run, as ratios of medians.
 *
 * Data path: one in-process controller (ControllerHarness, its own test ranges) runs one
 * Container whose program is the demo's counter server (manifests/demo/counter/counter.c, built
 * statically on the host with gcc and copied into the harness's busybox rootfs, as the network
 * suite does with udp-echo): one thread, epoll, keep-alive. It publishes 8080 on a hostPort of
 * its own, and a Service (port 80 → 8080) in front of it has a Service hostPort. wrk (Debian's)
 * then runs `GET /get_counter` with keep-alive against four targets, in rounds whose order
 * rotates so drift hits all alike: the container's IP (the peer: no rule in the path), the
 * ClusterIP (Conductor's nftables DNAT), the Service hostPort at 127.0.0.1 (the same table's
 * hostport map, route_localnet and masquerade) and the Container hostPort at 127.0.0.1
 * (portmap's DNAT). A round whose wrk saw socket errors or non-2xx answers fails the bench
 * rather than report a rate of errors. Traffic goes only to addresses this run made (the
 * container's, its Service's) and to 127.0.0.1.
 *
 * Set-up and tear-down: NodeNetwork.attach + detach of a bridge-mode container (what a
 * Container's start and removal cost in networking: its netns, CNI ADD through bridge,
 * host-local, portmap and loopback, its /etc files and records, then CNI DEL and the netns
 * removed) on a node network of its own (state dir, installation and test ranges from
 * testNetwork(), no DNS), against the bare CNI calls of the same conflist file
 * (CniNetwork.add/del on a netns made with `ip netns add`, same arguments and runtimeConfig),
 * alternating which goes first. Both run in the host's namespace, on the test bridge only.
 *
 * Everything made is removed at the end, also on failure or Ctrl-C (which stops after the
 * current step): the harness (containers, node network, directories), the attach bench's node
 * network, netns and state dir, the binary.
 *
 *   node build/bench/bench/network.js [--rounds N] [--duration S] [--threads N]
 *     [--connections N] [--attach-n N] [--skip-data-path] [--skip-attach]
 */
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import type { Container, Image, Service } from '../controller/api/types.generated.js';
import { defaultInstallationName } from '../runtime-core/src/installation.js';
import { CniNetwork, type CniAttachment } from '../runtime-core/src/network/cni.js';
import {
  CNI_BIN_DIRS,
  NodeNetwork,
  netnsNames,
  type NetworkOptions,
} from '../runtime-core/src/network/network.js';
import {
  ControllerHarness,
  busyboxImage,
  containerManifest,
  testNetwork,
} from '../test/fixtures/controller.js';
import { findLeaks, hostSnapshot } from '../test/fixtures/leaks.js';
import { httpGet, networkSnapshot, type NetworkSnapshot } from '../test/fixtures/network.js';
import { FIXTURE_ROOT, uniqueId } from '../test/fixtures/rootfs.js';
import { firstLine, median, parseFlags, positiveFlag, repoRoot, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const positive = (name: string, fallback: number): number => positiveFlag(flags, name, fallback);
const rounds = positive('rounds', 3);
const duration = positive('duration', 5);
const threads = positive('threads', 2);
const connections = positive('connections', 32);
const attachN = positive('attach-n', 20);
const skipDataPath = flags.get('skip-data-path') === 'true';
const skipAttach = flags.get('skip-attach') === 'true';
/** The target: each rule-carrying path at least this fraction of the direct rate. */
const TARGET = 0.9;

const PREFIX = uniqueId('nbench');
/** Names and ranges this run made on the host (installations, CIDRs): for the leak check. */
const ours: string[] = [PREFIX];
let stop = false;
process.once('SIGINT', () => {
  stop = true;
  console.error('bench: stopping after this step, then cleaning up');
});

const sh = (cmd: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${firstLine(stderr || err.message)}`));
      else resolve(stdout);
    });
  });
const hostPort = (): number => 20000 + Math.floor(Math.random() * 20000);
const ms = (x: number): string => x.toFixed(1);

// ---------------------------------------------------------------------------------------------
// Data path

interface WrkRun {
  rps: number;
  /** Socket errors and non-2xx/3xx answers, when there were any. */
  errors?: string;
}

/** One wrk run against `url`; its Requests/sec, and whatever went wrong. */
async function wrk(url: string, seconds: number): Promise<WrkRun> {
  const out = await sh('wrk', [
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '5s',
    url,
  ]);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  if (rps === undefined) throw new Error(`wrk ${url}: no Requests/sec in its output: ${out}`);
  const errors = [
    /Socket errors:[^\n]*/.exec(out)?.[0],
    /Non-2xx or 3xx responses:[^\n]*/.exec(out)?.[0],
  ].filter((x): x is string => x !== undefined);
  return { rps: Number(rps), ...(errors.length ? { errors: errors.join('; ') } : {}) };
}

const ready = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' &&
  o.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true &&
  !!o.status.ip;

interface Target {
  name: string;
  url: string;
  samples: number[];
}

async function dataPath(work: string): Promise<void> {
  if (!which('wrk')) {
    console.log('data path: skipped, wrk not found (apt-get install wrk)');
    return;
  }
  const ns = `${PREFIX}-dp`;
  const counter = join(work, 'counter');
  execFileSync('gcc', [
    '-O2',
    '-static',
    '-o',
    counter,
    join(repoRoot(), 'manifests', 'demo', 'counter', 'counter.c'),
  ]);
  const h = await ControllerHarness.create(ns);
  ours.push(defaultInstallationName(h.stateDir), ...rangesOf(h.network));
  try {
    copyFileSync(counter, join(h.watchDir, 'rootfs', 'bin', 'counter'));
    await h.write('image.yaml', busyboxImage(ns));
    await h.start();
    await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready', 60_000);
    const containerHostPort = hostPort();
    let serviceHostPort = hostPort();
    while (serviceHostPort === containerHostPort) serviceHostPort = hostPort();
    await h.write(
      'counter.yaml',
      containerManifest(
        ns,
        'counter',
        {
          command: ['/bin/counter', '8080'],
          ports: [{ name: 'http', containerPort: 8080, hostPort: containerHostPort }],
          readinessProbe: { httpGet: { path: '/get_counter', port: 'http' }, periodSeconds: 1 },
        },
        { app: 'counter' },
      ),
    );
    await h.write(
      'service.yaml',
      JSON.stringify({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Service',
        metadata: { name: 'counter', namespace: ns },
        spec: {
          selector: { app: 'counter' },
          ports: [{ name: 'http', port: 80, targetPort: 8080, hostPort: serviceHostPort }],
        },
      }),
    );
    const c = await h.waitFor<Container>('Container', 'counter', ready, 30_000);
    const s = await h.waitFor<Service>(
      'Service',
      'counter',
      (o) => !!o?.status?.clusterIP && (o.status.endpoints ?? []).some((e) => e.ready),
      30_000,
    );
    const ip = c?.status?.ip ?? '';
    const clusterIP = s?.status?.clusterIP ?? '';
    const targets: Target[] = [
      { name: 'container IP (direct)', url: `http://${ip}:8080/get_counter`, samples: [] },
      { name: 'ClusterIP', url: `http://${clusterIP}:80/get_counter`, samples: [] },
      {
        name: 'Service hostPort 127.0.0.1',
        url: `http://127.0.0.1:${serviceHostPort}/get_counter`,
        samples: [],
      },
      {
        name: 'Container hostPort 127.0.0.1',
        url: `http://127.0.0.1:${containerHostPort}/get_counter`,
        samples: [],
      },
    ];
    // Every path answers with the counter before anything is timed.
    for (const t of targets) {
      const u = new URL(t.url);
      const r = await httpGet(u.hostname, Number(u.port), u.pathname);
      if (r.status !== 200 || !/^\d+\n$/.test(r.body))
        throw new Error(`${t.name} ${t.url}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    console.log(
      `data path: wrk -t${threads} -c${connections}, ${duration} s per run, ${rounds} rounds ` +
        `(order rotating, after a 1 s warm-up of each), GET /get_counter with keep-alive on ` +
        `the counter server (one thread); load average ${loadavg()[0]?.toFixed(2)} on ` +
        `${cpus().length} cores`,
    );
    for (const t of targets) await wrk(t.url, 1);
    for (let r = 0; r < rounds && !stop; r++) {
      const line: string[] = [];
      for (let i = 0; i < targets.length && !stop; i++) {
        const t = targets[(r + i) % targets.length];
        if (!t) continue;
        const run = await wrk(t.url, duration);
        if (run.errors) throw new Error(`wrk ${t.name} (${t.url}): ${run.errors}`);
        t.samples.push(run.rps);
        line.push(`${t.name} ${run.rps.toFixed(0)}`);
      }
      console.log(`  round ${r}: ${line.join(', ')} req/s`);
    }
    const peer = targets[0]?.samples ?? [];
    const direct = median(peer);
    const rows: string[][] = [
      ['', 'req/s (median)', 'runs', '/ direct', 'target', '(per-round ratios)'],
    ];
    for (const t of targets) {
      const m = median(t.samples);
      const isPeer = t === targets[0];
      const ratio = m / direct;
      rows.push([
        t.name,
        m.toFixed(0),
        t.samples.map((x) => x.toFixed(0)).join(' '),
        isPeer ? '(peer)' : ratio.toFixed(2),
        isPeer ? '-' : `≥ ${TARGET} ${ratio >= TARGET ? 'PASS' : 'MISS'}`,
        isPeer ? '' : t.samples.map((x, i) => (x / (peer[i] ?? NaN)).toFixed(2)).join(' '),
      ]);
    }
    console.log(`medians:\n${table(rows)}`);
    console.log(
      [
        `direct: ${ip}:8080 (no rule in the path); ClusterIP ${clusterIP}:80 (nftables DNAT);`,
        `Service hostPort ${serviceHostPort} (service table, route_localnet, masquerade);`,
        `Container hostPort ${containerHostPort} (portmap DNAT, masquerade).`,
        `The machine has ${cpus().length} cores: wrk's ${threads} threads and the server ` +
          'compete for them, so rates are CPU-bound and the ratios compare the paths under the ' +
          'same contention (not the network).',
        "/ direct: the medians' ratio; per-round ratios: each run over the same round's direct run.",
        `load average after: ${loadavg()[0]?.toFixed(2)}.`,
      ].join('\n'),
    );
  } finally {
    await h.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Set-up and tear-down

interface Timing {
  setUp: number;
  tearDown: number;
}

async function attachBench(): Promise<void> {
  const stateDir = await mkdtemp(join(FIXTURE_ROOT, `${PREFIX}-attach-`));
  const installation = defaultInstallationName(stateDir);
  const range = testNetwork();
  ours.push(installation, ...rangesOf(range));
  const net = new NodeNetwork(stateDir, installation, { ...range, dns: false });
  const tag = PREFIX.slice(PREFIX.lastIndexOf('-') + 1);
  /** Bare netns made and not yet removed, by name, with their CNI attachment. */
  const bare = new Map<string, CniAttachment>();
  let cni: CniNetwork | undefined;
  const conductor: Timing[] = [];
  const plain: (Timing & { add: number; del: number })[] = [];
  try {
    const info = await net.nodeInfo();
    cni = await CniNetwork.load(info.conflist, {
      binDirs: CNI_BIN_DIRS,
      cacheDir: join(stateDir, 'bare-cni-cache'),
    });
    console.log(
      `per-container network set-up and tear-down, ${attachN} each (+1 warm-up), alternating: ` +
        `NodeNetwork.attach/detach vs bare CNI ADD/DEL of ${info.conflist} ` +
        `(${cni.conf.plugins.map((p) => p.type).join(', ')}), range ${range.containerCidr}; ` +
        `load average ${loadavg()[0]?.toFixed(2)}`,
    );
    const attachDetach = async (i: number): Promise<Timing> => {
      const id = `${tag}a${i + 1}`;
      const t0 = performance.now();
      const att = await net.attach({
        id,
        mode: 'bridge',
        namespace: 'bench',
        name: id,
        hostname: id,
      });
      const t1 = performance.now();
      if (!att.ip) throw new Error(`attach ${id}: no address`);
      await net.detach(id);
      return { setUp: t1 - t0, tearDown: performance.now() - t1 };
    };
    const bareAddDel = async (i: number): Promise<Timing & { add: number; del: number }> => {
      if (!cni) throw new Error('no CNI network');
      const name = `${PREFIX}-b${i + 1}`;
      const att: CniAttachment = {
        containerId: `${tag}b${i + 1}`,
        netns: `/run/netns/${name}`,
        ifName: 'eth0',
        args: {
          IgnoreUnknown: '1',
          K8S_POD_NAMESPACE: 'bench',
          K8S_POD_NAME: name,
          K8S_POD_INFRA_CONTAINER_ID: `${tag}b${i + 1}`,
        },
        capabilityArgs: { portMappings: [] },
      };
      const t0 = performance.now();
      await sh('ip', ['netns', 'add', name]);
      bare.set(name, att);
      const t1 = performance.now();
      const result = await cni.add(att);
      const t2 = performance.now();
      if (!result.ips?.length) throw new Error(`CNI ADD ${name}: no address`);
      await cni.del(att);
      const t3 = performance.now();
      await sh('ip', ['netns', 'del', name]);
      bare.delete(name);
      const t4 = performance.now();
      return { setUp: t2 - t0, tearDown: t4 - t2, add: t2 - t1, del: t3 - t2 };
    };
    for (let i = -1; i < attachN && !stop; i++) {
      const first = i % 2 === 0;
      const a = first ? await attachDetach(i) : undefined;
      const b = await bareAddDel(i);
      const a2 = a ?? (await attachDetach(i));
      if (i < 0) continue;
      conductor.push(a2);
      plain.push(b);
    }
    const cSet = median(conductor.map((x) => x.setUp));
    const cDown = median(conductor.map((x) => x.tearDown));
    const bSet = median(plain.map((x) => x.setUp));
    const bDown = median(plain.map((x) => x.tearDown));
    const bAdd = median(plain.map((x) => x.add));
    const bDel = median(plain.map((x) => x.del));
    const cTotal = median(conductor.map((x) => x.setUp + x.tearDown));
    const bTotal = median(plain.map((x) => x.setUp + x.tearDown));
    const bCni = median(plain.map((x) => x.add + x.del));
    console.log(
      `medians (ms):\n${table([
        ['', 'set-up', 'tear-down', 'both', '/ bare'],
        ['NodeNetwork attach / detach', ms(cSet), ms(cDown), ms(cTotal), '-'],
        [
          'bare: ip netns add + CNI ADD / CNI DEL + ip netns del',
          ms(bSet),
          ms(bDown),
          ms(bTotal),
          (cTotal / bTotal).toFixed(2),
        ],
        ['bare: CNI ADD / CNI DEL only', ms(bAdd), ms(bDel), ms(bCni), (cTotal / bCni).toFixed(2)],
      ])}`,
    );
    console.log(
      [
        '/ bare: NodeNetwork attach+detach time over the bare calls (1.00 = no overhead).',
        'attach also writes its record (before and after), /etc/hosts, hostname and resolv.conf;',
        'detach reads the record, runs DEL with the cached result, removes files and netns.',
        `load average after: ${loadavg()[0]?.toFixed(2)}.`,
      ].join('\n'),
    );
  } finally {
    for (const [name, att] of bare) {
      await cni?.del(att).catch(() => undefined);
      await sh('ip', ['netns', 'del', name]).catch(() => undefined);
    }
    try {
      await net.gc(new Set());
      await net.teardown();
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------

function rangesOf(n: NetworkOptions): string[] {
  return [n.containerCidr, n.serviceCidr].filter((x): x is string => x !== undefined);
}

/** What differs from `before` (other suites running at the same time show up here too). */
function networkDiff(before: NetworkSnapshot, after: NetworkSnapshot): string[] {
  const out: string[] = [];
  for (const key of ['netns', 'links', 'routes', 'nftTables', 'cni'] as const) {
    const was = new Set(before[key]);
    const now = new Set(after[key]);
    for (const x of now) if (!was.has(x)) out.push(`${key}: + ${x}`);
    for (const x of was) if (!now.has(x)) out.push(`${key}: - ${x}`);
  }
  if (before.ipForward !== after.ipForward)
    out.push(`ip_forward: ${before.ipForward} → ${after.ipForward}`);
  return out;
}

async function main(): Promise<void> {
  const before = hostSnapshot();
  const netBefore = networkSnapshot();
  const work = mkdtempSync(join(FIXTURE_ROOT, `${PREFIX}-work-`));
  try {
    if (!skipDataPath) await dataPath(work);
    if (!skipAttach && !stop) {
      if (!skipDataPath) console.log();
      await attachBench();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
    const leaks = findLeaks(before, { idPrefix: PREFIX, runtimeRoots: [] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    const ours = netnsNames().filter((n) => n.startsWith(PREFIX));
    if (left.length + ours.length > 0)
      console.error(`bench: left behind:\n  ${[...left, ...ours].join('\n  ')}`);
    // Only what names this run's installations, prefix or ranges is ours: suites running at
    // the same time add and remove their own links and routes meanwhile.
    const diff = networkDiff(netBefore, networkSnapshot());
    const mine = diff.filter((d) => ours.some((o) => d.includes(o)));
    if (mine.length > 0) console.error(`bench: left on the host:\n  ${mine.join('\n  ')}`);
    console.log(
      `host network after the run: ${mine.length} change(s) of this run's left` +
        (diff.length > mine.length
          ? `; ${diff.length - mine.length} change(s) by others running at the same time`
          : ''),
    );
  }
}

await main();
