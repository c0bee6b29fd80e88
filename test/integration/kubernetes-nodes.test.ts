/**
 * Two agents on one real API server, as two nodes (issue 11): unbound Containers are claimed by
 * exactly one of them and run there and nowhere else; a Container runs where spec.nodeName says;
 * an agent that stops renewing its Lease has its Containers marked Unknown by the other within
 * the Lease's duration, and written back by itself when it returns (adopting them, not
 * restarting them). Both agents run in this process, each with its own state dir, installation
 * (cgroup parent, bridge, nftables table) and network range. Needs root.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { exec } from '../../controller/cli/exec.js';
import type { CliIO } from '../../controller/cli/io.js';
import { logs } from '../../controller/cli/logs.js';
import { containerIdFor } from '../../controller/controllers/container.js';
import { runController, type RunningController } from '../../controller/manager.js';
import { silentLogger } from '../../runtime-core/src/index.js';
import { CONTROL_PLANE_BUILD_TIMEOUT, ControlPlane } from '../fixtures/control-plane.js';
import { containerManifest, removeHostState, testNetwork } from '../fixtures/controller.js';
import { busyboxImage } from '../fixtures/images.js';
import { pollFor } from '../fixtures/poll.js';
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

const NS = uniqueId('k8n');
/** Short Leases: a node is lost 3 s after its last renewal. */
const LEASE = { durationSeconds: 3, renewMs: 500 };

interface Agent {
  node: string;
  stateDir: string;
  network: ReturnType<typeof testNetwork>;
  /** The node's labels (`--node-labels`). */
  labels: Record<string, string>;
  ctl?: RunningController;
}

let base: string;
let cp: ControlPlane;
let registry: Registry;
let before: HostSnapshot;
const agents: Agent[] = [];

function startAgent(a: Agent): Promise<RunningController> {
  return runController({
    kubeconfig: cp.kubeconfig,
    nodeName: a.node,
    nodeLabels: a.labels,
    stateDir: a.stateDir,
    metricsAddr: '127.0.0.1:0',
    network: a.network,
    logger: silentLogger,
    images: { buildIdPrefix: `${NS}-build` },
    lease: LEASE,
  }).then((ctl) => (a.ctl = ctl));
}

/** A busybox Container that sleeps, in the suite's namespace. */
function containerJson(name: string, spec: Record<string, unknown> = {}): string {
  return containerManifest(NS, name, { command: ['sleep', '3600'], ...spec });
}

const running = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' && o.status.reason === undefined && o.spec.nodeName !== undefined;

const readyOf = (o: Container | undefined): string | undefined =>
  o?.status?.conditions?.find((c) => c.type === 'Ready')?.status;

const unschedulable = (o: Container | undefined): boolean => o?.status?.reason === 'Unschedulable';

/**
 * The reasons of the events about a Container, once one is `reason` (events are posted after
 * the status write they tell of: polled, bounded).
 */
function eventReasons(name: string, reason: string): Promise<string[]> {
  const read = async (): Promise<string[]> =>
    (
      await cp.kubectl([
        'get',
        'events.events.k8s.io',
        '-n',
        NS,
        '--field-selector',
        `regarding.name=${name}`,
        '-o',
        'jsonpath={.items[*].reason}',
      ])
    ).split(' ');
  return pollFor(
    read,
    (reasons) => reasons.includes(reason),
    10_000,
    (reasons) => `no ${reason} event about ${name} in 10 s; reasons: ${reasons.join(' ')}`,
  );
}

beforeAll(async () => {
  before = hostSnapshot();
  base = mkdtempSync(join(FIXTURE_ROOT, `${NS}-`));
  cp = await ControlPlane.up(join(base, 'control-plane'));
  await cp.applyCrds();
  await cp.kubectl(['create', 'namespace', NS]);
  registry = await startRegistry({ prefix: NS });
  await pushImage(await busyboxImage(), registry, `${NS}/busybox:1`);
  for (const n of ['a', 'b']) {
    const stateDir = join(base, `state-${n}`);
    mkdirSync(stateDir);
    // Node b has a label node a lacks, for nodeSelector.
    const labels: Record<string, string> = n === 'b' ? { disk: 'ssd' } : {};
    agents.push({ node: `${NS}-${n}`, stateDir, network: testNetwork(), labels });
  }
  for (const a of agents) await startAgent(a);
  await cp.kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Image',
      metadata: { name: 'busybox', namespace: NS },
      spec: { from: `${registry.host}/${NS}/busybox:1`, registry: { tlsVerify: false } },
    }),
  );
  await cp.waitFor<Image>('images', NS, 'busybox', (o) => o?.status?.phase === 'Ready');
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(async () => {
  for (const a of agents) {
    await a.ctl?.stop();
    await removeHostState(a.stateDir, a.network);
  }
  await registry?.stop();
  await cp?.down();
  if (base) rmSync(base, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: NS });
}, 120_000);

describe('two agents as two nodes', () => {
  const [a, b] = [0, 1].map((i) => () => agents[i] as Agent) as [() => Agent, () => Agent];

  it('each unbound Container is claimed by one agent and runs there only; a bound one where it says', async () => {
    const names = ['c1', 'c2', 'c3', 'c4', 'c5'];
    await cp.kubectl(
      ['apply', '-f', '-'],
      [...names.map((n) => containerJson(n)), containerJson('on-b', { nodeName: b().node })].join(
        '\n',
      ),
    );
    for (const name of [...names, 'on-b']) {
      const c = await cp.waitFor<Container>('containers', NS, name, running);
      const node = c?.spec.nodeName;
      expect([a().node, b().node]).toContain(node);
      if (name === 'on-b') expect(node).toBe(b().node);
      // Run by the agent of its node, and only there.
      const id = containerIdFor(NS, name);
      const where = await Promise.all(
        agents.map(async (x) => (await x.ctl?.runtime.find(id)) !== undefined),
      );
      expect(where).toEqual(agents.map((x) => x.node === node));
    }
  }, 120_000);

  it('an unbound Container with a nodeSelector is claimed only by a node with those labels; one no node matches is Unschedulable until edited to match', async () => {
    const selected = ['ssd1', 'ssd2', 'ssd3'];
    // Applied first, so both agents have judged it by the time the others are claimed.
    await cp.kubectl(
      ['apply', '-f', '-'],
      [
        containerJson('nvme', { nodeSelector: { disk: 'nvme' } }),
        ...selected.map((n) => containerJson(n, { nodeSelector: { disk: 'ssd' } })),
      ].join('\n'),
    );
    for (const name of selected) {
      const c = await cp.waitFor<Container>('containers', NS, name, running);
      expect(c?.spec.nodeName).toBe(b().node);
    }
    // No node has disk=nvme: it stays unbound (no finalizer), run nowhere, and its status says
    // why, in kube-scheduler's words, as a Pod's would.
    const nvme = await cp.waitFor<Container>('containers', NS, 'nvme', unschedulable, 15_000);
    expect({
      nodeName: nvme?.spec.nodeName,
      finalizers: nvme?.metadata.finalizers,
      phase: nvme?.status?.phase,
      message: nvme?.status?.message,
      ready: readyOf(nvme),
    }).toEqual({
      nodeName: undefined,
      finalizers: undefined,
      phase: 'Pending',
      message:
        "0/2 nodes are available: 2 node(s) didn't match the Container's nodeSelector (disk=nvme)",
      ready: 'False',
    });
    expect(await eventReasons('nvme', 'FailedScheduling')).toContain('FailedScheduling');
    const id = containerIdFor(NS, 'nvme');
    for (const x of agents) expect(await x.ctl?.runtime.find(id)).toBeUndefined();
    // Said once: the agents' checks of the Leases (every 500 ms) write nothing more.
    const rv = nvme?.metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 1500));
    expect((await cp.get<Container>('containers', NS, 'nvme'))?.metadata.resourceVersion).toBe(rv);
    // Its selector edited to one node b matches: b claims it, runs it, and its status is b's.
    await cp.kubectl([
      'patch',
      'container.conductor.dev',
      'nvme',
      '-n',
      NS,
      '--type=merge',
      '-p',
      '{"spec":{"nodeSelector":{"disk":"ssd"}}}',
    ]);
    const moved = await cp.waitFor<Container>('containers', NS, 'nvme', running);
    expect([moved?.spec.nodeName, readyOf(moved)]).toEqual([b().node, 'True']);
    await cp.kubectl(['delete', 'container.conductor.dev', 'nvme', '-n', NS, '--timeout=30s']);
    for (const x of agents) expect(await x.ctl?.runtime.find(id)).toBeUndefined();
  }, 120_000);

  it('logs and exec --kubeconfig work on the node that runs the container, and name it elsewhere', async () => {
    const out: string[] = [];
    const io: CliIO = {
      stdout: (t) => out.push(t),
      stderr: (t) => out.push(t),
      cwd: process.cwd(),
      now: () => new Date(),
      signals: process,
    };
    const on = (x: Agent): string[] => [
      '--kubeconfig',
      cp.kubeconfig,
      '--node-name',
      x.node,
      '--state-dir',
      x.stateDir,
    ];
    await cp.kubectl(
      ['apply', '-f', '-'],
      containerJson('talks', {
        nodeName: a().node,
        command: ['sh', '-c', 'echo hello from a; sleep 3600'],
      }),
    );
    await cp.waitFor<Container>('containers', NS, 'talks', running);
    let code = -1;
    for (let i = 0; i < 50 && !out.join('').includes('hello from a'); i++) {
      out.length = 0;
      code = await logs(['talks', '-n', NS, ...on(a())], io);
    }
    expect([code, out.join('')]).toEqual([0, 'hello from a\n']);
    // From the other node: refused, naming where it runs.
    await expect(logs(['talks', '-n', NS, ...on(b())], io)).rejects.toThrow(
      `container ${NS}/talks runs on node ${a().node}, not on this node (${b().node})`,
    );
    await expect(exec(['talks', '-n', NS, ...on(b()), '--', 'true'], io)).rejects.toThrow(
      `runs on node ${a().node}`,
    );
    expect(await exec(['talks', '-n', NS, ...on(a()), '--', 'true'], io)).toBe(0);
    await expect(logs(['nobody', '-n', NS, ...on(a())], io)).rejects.toThrow(
      `containers.conductor.dev "nobody" not found in namespace ${NS}`,
    );
  }, 60_000);

  it("marks a stopped agent's Containers Unknown within its Lease, and it writes them back when it returns", async () => {
    const pid = (await cp.get<Container>('containers', NS, 'on-b'))?.status?.pid;
    expect(pid).toBeGreaterThan(1);
    await b().ctl?.stop();
    b().ctl = undefined;
    // The other agent sees b's Lease expire (3 s) and marks b's Containers.
    const lost = await cp.waitFor<Container>(
      'containers',
      NS,
      'on-b',
      (o) => o?.status?.phase === 'Unknown',
      15_000,
    );
    expect(lost?.status).toMatchObject({
      reason: 'NodeLost',
      message: expect.stringContaining(`node ${b().node} stopped renewing its lease`),
    });
    expect(readyOf(lost)).toBe('False');
    expect(await eventReasons('on-b', 'NodeNotReady')).toContain('NodeNotReady');
    // a's Containers are untouched.
    for (const name of ['c1', 'c2', 'c3', 'c4', 'c5']) {
      const c = await cp.get<Container>('containers', NS, name);
      if (c?.spec.nodeName === a().node) expect(c.status?.phase).toBe('Running');
    }
    // Only b has disk=ssd, and b is lost: a new Container selecting it waits, and says why.
    await cp.kubectl(
      ['apply', '-f', '-'],
      containerJson('ssd4', { nodeSelector: { disk: 'ssd' } }),
    );
    const waiting = await cp.waitFor<Container>('containers', NS, 'ssd4', unschedulable, 15_000);
    expect(waiting?.status?.message).toBe(
      "0/2 nodes are available: 1 node(s) lost (their lease expired), 1 node(s) didn't match the Container's nodeSelector (disk=ssd)",
    );
    // b comes back: it adopts its Containers (the same process) and writes them Running, and
    // claims the one that waited for it.
    await startAgent(b());
    const back = await cp.waitFor<Container>('containers', NS, 'on-b', running, 30_000);
    expect(back?.status?.pid).toBe(pid);
    expect(readyOf(back)).toBe('True');
    const claimed = await cp.waitFor<Container>('containers', NS, 'ssd4', running, 30_000);
    expect([claimed?.spec.nodeName, readyOf(claimed)]).toEqual([b().node, 'True']);
  }, 120_000);
});
