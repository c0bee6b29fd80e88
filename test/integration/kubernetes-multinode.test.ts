/**
 * Two nodes' containers reach each other (issue 11): one agent in this host's network namespace,
 * the other as a node of its own — its own network namespace joined to this one by a veth pair
 * (test/fixtures/test-node.ts), its own process, state dir and installation — on one real API
 * server and one cluster container range. Each node holds a part of the range through its Lease
 * and routes the other's part through the other's address (host-gw); every node programs every
 * Service with the endpoints of both. A container on one node reaches a Service whose endpoint
 * is on the other, both ways, by name. Needs root.
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Container, Image, Service } from '../../controller/api/types.generated.js';
import { containerIdFor } from '../../controller/controllers/container.js';
import { runController, type RunningController } from '../../controller/manager.js';
import { silentLogger } from '../../runtime-core/src/index.js';
import { CONTROL_PLANE_BUILD_TIMEOUT, ControlPlane } from '../fixtures/control-plane.js';
import { REPO_ROOT, buildDist, removeHostState, testNetwork } from '../fixtures/controller.js';
import { busyboxImage } from '../fixtures/images.js';
import {
  FIXTURE_ROOT,
  assertNoLeaks,
  hostSnapshot,
  pushImage,
  startRegistry,
  uniqueId,
  type HostSnapshot,
  type Registry,
} from '../fixtures/index.js';
import { TestNode } from '../fixtures/test-node.js';

const NS = uniqueId('k8m');
const NODE_A = `${NS}-a`;
const NODE_B = `${NS}-b`;
/** The one container range of the cluster, and its Service range: each node takes a part. */
const network = testNetwork();

let base: string;
let cp: ControlPlane;
let registry: Registry;
let node: TestNode;
let before: HostSnapshot;
let agentA: RunningController | undefined;
let agentB: ReturnType<TestNode['spawn']> | undefined;
let stateA: string;
let stateB: string;
let logB: string;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function apply(...objects: object[]): Promise<string> {
  return cp.kubectl(['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n'));
}

function container(name: string, nodeName: string, spec: Record<string, unknown>, labels = {}) {
  return {
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: NS, labels },
    spec: { image: 'busybox', nodeName, terminationGracePeriodSeconds: 1, ...spec },
  };
}

const httpd = {
  command: ['httpd', '-f', '-p', '8080', '-h', '/etc'],
  ports: [{ containerPort: 8080 }],
};

function service(name: string, app: string) {
  return {
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Service',
    metadata: { name, namespace: NS },
    spec: { selector: { app }, ports: [{ port: 8080 }] },
  };
}

const running = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' && typeof o.status.ip === 'string';

/**
 * `conductor exec` on node B's agent, from here (the runtime joins the container by its pid).
 * busybox's `wget -T` crashes when a connection fails (Debian's 1.35): time out with `timeout`.
 */
async function execOnB(name: string, argv: string[]): Promise<{ code: number; out: string }> {
  const child = node.spawn(
    process.execPath,
    [
      'bin/conductor.js',
      'exec',
      name,
      '-n',
      NS,
      '--kubeconfig',
      cp.kubeconfig,
      '--node-name',
      NODE_B,
      '--state-dir',
      stateB,
      '--',
      ...argv,
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  return { code, out };
}

/** Node B's agent: `conductor up` as its own process inside node B's network namespace. */
function startB(): void {
  const log = openSync(logB, 'a');
  agentB = node.spawn(
    process.execPath,
    [
      'bin/conductor.js',
      'up',
      '--kubeconfig',
      cp.kubeconfig,
      '--node-name',
      NODE_B,
      '--node-ip',
      node.nodeIp,
      '--state-dir',
      stateB,
      '--installation',
      `k8m${NS.slice(-8)}`,
      '--container-cidr',
      network.containerCidr ?? '',
      '--service-cidr',
      network.serviceCidr ?? '',
      '--metrics-addr',
      '127.0.0.1:0',
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', log] },
  );
  closeSync(log);
}

/** Stops node B's agent (SIGTERM: its containers keep running, as a restart leaves them). */
async function stopB(): Promise<void> {
  if (!agentB || agentB.exitCode !== null || agentB.signalCode !== null) return;
  const exited = new Promise((resolve) => agentB?.once('exit', resolve));
  agentB.kill('SIGTERM');
  await exited;
}

beforeAll(async () => {
  before = hostSnapshot();
  base = mkdtempSync(join(FIXTURE_ROOT, `${NS}-`));
  stateA = join(base, 'state-a');
  stateB = join(base, 'state-b');
  mkdirSync(stateA);
  mkdirSync(stateB);
  logB = join(base, 'agent-b.log');
  await buildDist();
  cp = await ControlPlane.up(join(base, 'control-plane'));
  await cp.applyCrds();
  await cp.kubectl(['create', 'namespace', NS]);
  registry = await startRegistry({ prefix: NS });
  await pushImage(await busyboxImage(), registry, `${NS}/busybox:1`);

  // Node B: its own network namespace; the API server and the registry are on this host's
  // loopback, so they appear on B's loopback at the same ports (the same kubeconfig, the same
  // image reference).
  node = TestNode.create(`${NS.slice(0, 8)}`);
  const apiPort = Number(
    /server:\s*https:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(cp.kubeconfig, 'utf8'))?.[1],
  );
  await node.forwardLoopback(apiPort);
  await node.forwardLoopback(Number(registry.host.split(':')[1]));

  agentA = await runController({
    kubeconfig: cp.kubeconfig,
    nodeName: NODE_A,
    nodeIp: node.hostIp,
    stateDir: stateA,
    metricsAddr: '127.0.0.1:0',
    network,
    logger: silentLogger,
    images: { buildIdPrefix: `${NS}-build` },
    lease: { durationSeconds: 10, renewMs: 500 },
  });
  startB();
  await apply({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Image',
    metadata: { name: 'busybox', namespace: NS },
    spec: { from: `${registry.host}/${NS}/busybox:1`, registry: { tlsVerify: false } },
  });
  await cp.waitFor<Image>('images', NS, 'busybox', (o) => o?.status?.phase === 'Ready', 120_000);
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(async () => {
  await agentA?.stop();
  await stopB();
  // Node B's containers and network, removed from inside it as `conductor down` there would.
  if (node) {
    const down = node.spawn(process.execPath, ['bin/conductor.js', 'down', '--state-dir', stateB], {
      cwd: REPO_ROOT,
      stdio: 'ignore',
    });
    await new Promise((resolve) => down.once('close', resolve));
  }
  if (stateA) await removeHostState(stateA, network);
  await registry?.stop();
  await cp?.down();
  await node?.destroy();
  if (base) rmSync(base, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: NS });
}, 120_000);

describe('two nodes, one cluster network', () => {
  it('gives each node its own part of the container range, through its Lease', async () => {
    type Lease = {
      spec: { holderIdentity: string };
      metadata: { annotations?: Record<string, string> };
    };
    const leases = async (): Promise<Map<string, Record<string, string>>> => {
      const list = JSON.parse(
        await cp.kubectl([
          'get',
          'leases',
          '-n',
          'kube-node-lease',
          '-l',
          'app.kubernetes.io/name=conductor',
          '-o',
          'json',
        ]),
      ) as { items: Lease[] };
      return new Map(list.items.map((l) => [l.spec.holderIdentity, l.metadata.annotations ?? {}]));
    };
    // Node B's agent is its own process, started in the background: give it the time to start.
    let byNode = await leases();
    for (let i = 0; i < 120 && !byNode.has(NODE_B) && agentB?.exitCode === null; i++) {
      await sleep(500);
      byNode = await leases();
    }
    const a = byNode.get(NODE_A);
    const b = byNode.get(NODE_B);
    if (!b) throw new Error(`node B's agent has no Lease; its log:\n${readFileSync(logB, 'utf8')}`);
    expect(a?.['conductor.dev/node-ip']).toBe(node.hostIp);
    expect(b?.['conductor.dev/node-ip']).toBe(node.nodeIp);
    expect(a?.['conductor.dev/node-cidr']).toMatch(/\/26$/);
    expect(b?.['conductor.dev/node-cidr']).toMatch(/\/26$/);
    expect(a?.['conductor.dev/node-cidr']).not.toBe(b?.['conductor.dev/node-cidr']);
    // The core routes only other nodes' parts, through an IPv4 address; it says which is wrong,
    // before it changes any route.
    const own = a?.['conductor.dev/node-cidr'] ?? '';
    const other = b?.['conductor.dev/node-cidr'] ?? '';
    await expect(agentA?.runtime.setPeerRoutes([{ cidr: own, via: node.nodeIp }])).rejects.toThrow(
      `peer route ${own} via ${node.nodeIp}: not another node's part`,
    );
    await expect(agentA?.runtime.setPeerRoutes([{ cidr: other, via: 'node-b' }])).rejects.toThrow(
      `peer route ${other} via node-b: not an IPv4 address`,
    );
  }, 60_000);

  it('a container on one node reaches a Service whose endpoint is on the other, both ways', async () => {
    await apply(
      container('server-b', NODE_B, httpd, { app: 'on-b' }),
      container('client-a', NODE_A, { command: ['sleep', '3600'] }),
      container('server-a', NODE_A, httpd, { app: 'on-a' }),
      container('client-b', NODE_B, { command: ['sleep', '3600'] }),
      service('web-b', 'on-b'),
      service('web-a', 'on-a'),
    );
    const serverB = await cp.waitFor<Container>('containers', NS, 'server-b', running, 90_000);
    const serverA = await cp.waitFor<Container>('containers', NS, 'server-a', running, 90_000);
    await cp.waitFor<Container>('containers', NS, 'client-a', running, 90_000);
    await cp.waitFor<Container>('containers', NS, 'client-b', running, 90_000);
    for (const s of ['web-a', 'web-b'])
      await cp.waitFor<Service>(
        'services.conductor.dev',
        NS,
        s,
        (o) => o?.status?.endpoints?.[0]?.ready === true,
      );

    // A → B: by address, then through the Service's name (A's DNS, A's service table).
    const fromA = (url: string) =>
      agentA?.runtime.execOutput(containerIdFor(NS, 'client-a'), [
        'timeout',
        '10',
        'wget',
        '-qO-',
        url,
      ]);
    let got = await fromA(`http://${serverB?.status?.ip ?? ''}:8080/hostname`);
    for (let i = 0; i < 20 && got?.exitCode !== 0; i++) {
      await sleep(500); // B's range routed here at A's next Lease check
      got = await fromA(`http://${serverB?.status?.ip ?? ''}:8080/hostname`);
    }
    expect(got?.stdout).toBe('server-b\n');
    expect((await fromA('http://web-b:8080/hostname'))?.stdout).toBe('server-b\n');

    // B → A, the same from inside node B.
    let back = await execOnB('client-b', [
      'timeout',
      '10',
      'wget',
      '-qO-',
      `http://${serverA?.status?.ip ?? ''}:8080/hostname`,
    ]);
    for (let i = 0; i < 20 && back.code !== 0; i++) {
      await sleep(500);
      back = await execOnB('client-b', [
        'timeout',
        '10',
        'wget',
        '-qO-',
        `http://${serverA?.status?.ip ?? ''}:8080/hostname`,
      ]);
    }
    expect(back).toEqual({ code: 0, out: 'server-a\n' });
    expect(
      await execOnB('client-b', ['timeout', '10', 'wget', '-qO-', 'http://web-a:8080/hostname']),
    ).toEqual({
      code: 0,
      out: 'server-a\n',
    });
  }, 240_000);

  it('an Image Ready from one node: the other builds its own without touching the status, its container waits for it', async () => {
    // Node B away while the Image is built on A; a run step whose files differ on every build.
    await stopB();
    await apply({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Image',
      metadata: { name: 'stamped', namespace: NS },
      spec: {
        from: 'image:busybox',
        steps: [{ run: 'cat /proc/sys/kernel/random/uuid > /stamp' }],
      },
    });
    const onNode = (name: string, nodeName: string) =>
      container(name, nodeName, { image: 'stamped', command: ['sleep', '3600'] });
    await apply(onNode('stamp-a', NODE_A), onNode('stamp-b', NODE_B));
    const a = await cp.waitFor<Container>('containers', NS, 'stamp-a', running, 120_000);
    const image = await cp.get<Image>('images', NS, 'stamped');
    expect(image?.status?.phase).toBe('Ready');

    // B back: it finds the Image Ready with layers it does not have, builds them, and runs its
    // container on them, writing nothing over A's status.
    startB();
    const b = await cp.waitFor<Container>('containers', NS, 'stamp-b', running, 120_000);
    const stampA = await agentA?.runtime.execOutput(containerIdFor(NS, 'stamp-a'), [
      'cat',
      '/stamp',
    ]);
    const stampB = await execOnB('stamp-b', ['cat', '/stamp']);
    expect(stampA?.exitCode).toBe(0);
    expect(stampB.code).toBe(0);
    expect(stampA?.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(stampB.out).toMatch(/^[0-9a-f-]{36}\n$/);
    // Two builds: B ran the step itself (A's files are not here).
    expect(stampA?.stdout).not.toBe(stampB.out);
    // One digest: a layer is named by its build's inputs, on every node.
    expect(a?.status?.imageID).toBe(image?.status?.digest);
    expect(b?.status?.imageID).toBe(image?.status?.digest);
    // B never failed on missing layers.
    const events = await cp.kubectl(['get', 'events', '-n', NS, '-o', 'json']);
    const warnings = (
      JSON.parse(events) as {
        items: { type?: string; reason?: string; regarding?: { name?: string }; note?: string }[];
      }
    ).items.filter(
      (e) => e.type === 'Warning' && ['stamp-b', 'stamped'].includes(e.regarding?.name ?? ''),
    );
    expect(warnings).toEqual([]);

    // Settled: the status is A's as it was (not flipped to Building and back), and no container
    // was replaced.
    await sleep(3000);
    const later = await cp.get<Image>('images', NS, 'stamped');
    expect(later?.metadata?.resourceVersion).toBe(image?.metadata?.resourceVersion);
    for (const [name, was] of [
      ['stamp-a', a],
      ['stamp-b', b],
    ] as const) {
      const now = await cp.get<Container>('containers', NS, name);
      expect({
        name,
        phase: now?.status?.phase,
        containerID: now?.status?.containerID,
        startedAt: now?.status?.startedAt,
        restartCount: now?.status?.restartCount ?? 0,
      }).toEqual({
        name,
        phase: 'Running',
        containerID: was?.status?.containerID,
        startedAt: was?.status?.startedAt,
        restartCount: 0,
      });
    }
  }, 240_000);
});
