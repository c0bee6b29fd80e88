/**
 * Kubernetes mode end to end: a real kube-apiserver and etcd (hack/control-plane.sh), the CRDs
 * applied, and an in-process controller (runController) as the node agent — configured as its
 * DaemonSet runs it (in-cluster, as manifests/deploy/'s ServiceAccount and RBAC, so every case
 * also proves the RBAC is enough), and manifests/deploy/ in a server-side dry run (with and
 * without prometheus-operator's CRD, and manifests/observability/'s ServiceMonitor).
 * Objects are made with kubectl, as users make them; what the agent writes is read back with
 * kubectl: status through the status subresource, events.k8s.io Events, the finalizer that
 * holds a deleted Container until its host state is gone. The Image comes from a local
 * registry (an API object has no manifest directory for a copy step or an archive path).
 *
 * Needs the control-plane binaries (hack/control-plane.sh build, which hack/test.sh runs first;
 * run on its own, the suite builds them, about 7 minutes): never skipped.
 */
import { EventEmitter } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { describe as describeCommand } from '../../controller/cli/describe.js';
import { get as getCommand } from '../../controller/cli/get.js';
import type { CliIO } from '../../controller/cli/io.js';
import { main } from '../../controller/cli/main.js';
import { ConflictError } from '../../controller/client/client.js';
import { containerIdFor } from '../../controller/controllers/container.js';
import { runController, type RunningController } from '../../controller/manager.js';
import {
  FINALIZER,
  KubernetesClient,
  REPORTING_CONTROLLER,
} from '../../controller/source/kubernetes-client.js';
import type { Logger } from '../../runtime-core/src/index.js';
import {
  CONTROL_PLANE_BUILD_TIMEOUT,
  ControlPlane,
  SERVICE_MONITOR_CRD,
  thirdPartyCrds,
} from '../fixtures/control-plane.js';
import {
  REPO_ROOT,
  containerManifest,
  removeHostState,
  testNetwork,
} from '../fixtures/controller.js';
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

const NS = uniqueId('k8c');
const NODE = `node-${NS}`;
const network = testNetwork();
let base: string;
let cp: ControlPlane | undefined;
let cpDir: string;
let kubeconfig: string;
let stateDir: string;
let before: HostSnapshot;
let registry: Registry | undefined;
let ctl: RunningController | undefined;
const logs: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];

const logger: Logger = {
  debug: () => {},
  info: (msg, fields) => logs.push({ level: 'info', msg, ...(fields ? { fields } : {}) }),
  warn: (msg, fields) => logs.push({ level: 'warn', msg, ...(fields ? { fields } : {}) }),
  error: (msg, fields) => logs.push({ level: 'error', msg, ...(fields ? { fields } : {}) }),
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** kubectl against the suite's control plane (asynchronous: the controller runs in-process). */
/** Someone else writes a Container's status (through the subresource, as kubectl does). */
function patchStatusMessage(name: string, message: string): Promise<string> {
  return kubectl([
    'patch',
    'containers',
    name,
    '-n',
    NS,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status: { message } }),
  ]);
}

/** The suite's control plane, once beforeAll has brought it up. */
function plane(): ControlPlane {
  if (!cp) throw new Error('no control plane');
  return cp;
}

/** kubectl as the admin: its stdout, or an error with its stderr. */
function kubectl(args: string[], input?: string): Promise<string> {
  return plane().kubectl(args, input);
}

function getObject<T>(plural: string, name: string): Promise<T | undefined> {
  return plane().get<T>(plural, NS, name);
}

/** Polls the object through the API until `ok` holds (bounded), returning it. */
function waitFor<T>(
  plural: string,
  name: string,
  ok: (o: T | undefined) => boolean,
  timeoutMs = 60_000,
): Promise<T | undefined> {
  return plane().waitFor<T>(plural, NS, name, ok, timeoutMs);
}

/** A busybox Container that sleeps, in the suite's namespace. */
function containerJson(name: string, spec: Record<string, unknown> = {}): string {
  return containerManifest(NS, name, { command: ['sleep', '3600'], ...spec });
}

const DEPLOY = join(REPO_ROOT, 'manifests', 'deploy');
/** prometheus-operator's scrape of the agents' Service (manifests/deploy/metrics.yaml). */
const SERVICE_MONITOR = join(REPO_ROOT, 'manifests', 'observability', 'servicemonitor.yaml');
const SA_NAMESPACE = 'conductor-system';
const SA_NAME = 'conductor';
let inClusterRoot = '';
let savedEnv: { host?: string | undefined; port?: string | undefined } = {};

/** The agent as its DaemonSet runs it: in-cluster, as the deploy ServiceAccount. */
function agentOptions(): Parameters<typeof runController>[0] {
  return {
    inCluster: { root: inClusterRoot },
    nodeName: NODE,
    stateDir,
    metricsAddr: '127.0.0.1:0',
    network,
    logger,
    images: { buildIdPrefix: `${NS}-build` },
  };
}

const runningWithIp = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' &&
  o.status.reason === undefined &&
  typeof o.status.ip === 'string';

describe('Kubernetes mode against a real API server', () => {
  beforeAll(async () => {
    before = hostSnapshot();
    base = mkdtempSync(join(FIXTURE_ROOT, `${NS}-`));
    cpDir = join(base, 'control-plane');
    stateDir = join(base, 'state');
    const t0 = Date.now();
    cp = await ControlPlane.up(cpDir);
    kubeconfig = cp.kubeconfig;
    const upMs = Date.now() - t0;
    await cp.applyCrds();
    await kubectl(['create', 'namespace', NS]);
    registry = await startRegistry({ prefix: NS });
    await pushImage(await busyboxImage(), registry, `${NS}/busybox:1`);
    // The agent runs as manifests/deploy/'s ServiceAccount, with its RBAC and nothing more,
    // configured as in its Pod (in-cluster: the API server from the environment, the token and
    // CA from the ServiceAccount directory, here under a root of the suite's own).
    await kubectl(['apply', '-f', join(DEPLOY, 'namespace.yaml'), '-f', join(DEPLOY, 'rbac.yaml')]);
    const token = (
      await kubectl(['create', 'token', SA_NAME, '-n', SA_NAMESPACE, '--duration=2h'])
    ).trim();
    inClusterRoot = join(base, 'pod-root');
    const saDir = join(inClusterRoot, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(saDir, { recursive: true });
    writeFileSync(join(saDir, 'token'), token);
    copyFileSync(join(cpDir, 'pki', 'ca.crt'), join(saDir, 'ca.crt'));
    writeFileSync(join(saDir, 'namespace'), SA_NAMESPACE);
    const server = cp.server();
    savedEnv = {
      host: process.env.KUBERNETES_SERVICE_HOST,
      port: process.env.KUBERNETES_SERVICE_PORT,
    };
    process.env.KUBERNETES_SERVICE_HOST = server.hostname;
    process.env.KUBERNETES_SERVICE_PORT = server.port;
    const t1 = Date.now();
    ctl = await runController(agentOptions());
    console.info(
      `control plane up in ${upMs} ms; controller started and synced in ${Date.now() - t1} ms`,
    );
  }, CONTROL_PLANE_BUILD_TIMEOUT);

  afterAll(async () => {
    await ctl?.stop();
    if (savedEnv.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    else process.env.KUBERNETES_SERVICE_HOST = savedEnv.host;
    if (savedEnv.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
    else process.env.KUBERNETES_SERVICE_PORT = savedEnv.port;
    if (stateDir) await removeHostState(stateDir, network);
    await registry?.stop();
    await cp?.down();
    if (base) rmSync(base, { recursive: true, force: true });
    assertNoLeaks(before, { idPrefix: NS });
  }, 120_000);

  it('manifests/deploy/ passes a server-side dry run without prometheus-operator, and the observability ServiceMonitor with its CRD', async () => {
    // manifests/deploy/ must apply on a cluster without prometheus-operator's CRDs.
    const plain = await kubectl(['apply', '--dry-run=server', '-f', DEPLOY]);
    expect(plain).toContain('service/conductor-metrics');
    expect(plain).not.toContain('servicemonitor');
    await kubectl(['apply', '-f', join(thirdPartyCrds(), SERVICE_MONITOR_CRD)]);
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/servicemonitors.monitoring.coreos.com',
    ]);
    const out = await kubectl(['apply', '--dry-run=server', '-f', DEPLOY, '-f', SERVICE_MONITOR]);
    for (const what of [
      'namespace/conductor-system',
      'serviceaccount/conductor',
      'clusterrole.rbac.authorization.k8s.io/conductor-agent',
      'clusterrolebinding.rbac.authorization.k8s.io/conductor-agent',
      'daemonset.apps/conductor',
      'service/conductor-metrics',
      'servicemonitor.monitoring.coreos.com/conductor',
    ])
      expect(out).toContain(what);
    // A dry run stores nothing: the DaemonSet is not there.
    await expect(kubectl(['get', 'daemonset', 'conductor', '-n', SA_NAMESPACE])).rejects.toThrow(
      /NotFound|not found/,
    );
  }, 120_000);

  it('the agent, as its ServiceAccount, cannot read Secrets or write specs', async () => {
    const as = ['--as', `system:serviceaccount:${SA_NAMESPACE}:${SA_NAME}`];
    // `can-i` prints yes or no, and exits 1 on no.
    const can = async (...what: string[]): Promise<string> =>
      (await plane().kubectlRun(['auth', 'can-i', ...what, ...as])).stdout.trim();
    expect(await can('get', 'secrets', '-A')).toBe('no');
    expect(await can('list', 'secrets', '-A')).toBe('no');
    expect(await can('update', 'containers.conductor.dev', '-n', NS)).toBe('no');
    expect(await can('delete', 'containers.conductor.dev', '-n', NS)).toBe('no');
    expect(await can('create', 'pods', '-n', NS)).toBe('no');
    // What it does need.
    expect(await can('watch', 'containers.conductor.dev', '-A')).toBe('yes');
    expect(await can('patch', 'containers.conductor.dev', '--subresource=status', '-n', NS)).toBe(
      'yes',
    );
    expect(await can('create', 'events.events.k8s.io', '-n', NS)).toBe('yes');
  });

  it('builds an Image applied with kubectl, status through the status subresource', async () => {
    if (!registry) throw new Error('no registry');
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Image',
        metadata: { name: 'busybox', namespace: NS },
        spec: { from: `${registry.host}/${NS}/busybox:1`, registry: { tlsVerify: false } },
      }),
    );
    const image = await waitFor<Image>('images', 'busybox', (o) => o?.status?.phase === 'Ready');
    expect(image?.status?.digest).toMatch(/^sha256:/);
    expect(image?.metadata.finalizers).toContain(FINALIZER);
  }, 120_000);

  it('runs a Container made with kubectl: Running with an ip, an event, the finalizer', async () => {
    const t0 = Date.now();
    await kubectl(['apply', '-f', '-'], containerJson('web', {}));
    const c = await waitFor<Container>('containers', 'web', runningWithIp);
    console.info(`kubectl apply → Running in ${Date.now() - t0} ms`);
    expect(c?.metadata.finalizers).toEqual([FINALIZER]);
    expect(c?.status?.observedGeneration).toBe(c?.metadata.generation);
    expect(c?.status?.ip).toMatch(/^10\.79\./);
    // Written by the status subresource, with our field manager; of the spec only the binding
    // to this node (spec.nodeName, set with the finalizer), the rest only by kubectl.
    const fields = (
      JSON.parse(
        await kubectl([
          'get',
          'containers',
          'web',
          '-n',
          NS,
          '-o',
          'json',
          '--show-managed-fields',
        ]),
      ) as {
        metadata: { managedFields: { manager: string; subresource?: string; fieldsV1: object }[] };
      }
    ).metadata.managedFields;
    const ours = fields.filter((f) => f.manager === 'conductor-agent');
    expect(ours.map((f) => f.subresource ?? 'main').sort()).toEqual(['main', 'status']);
    const spec = ours.map((f) => (f.fieldsV1 as { 'f:spec'?: object })['f:spec']);
    expect(spec.filter((s) => s !== undefined)).toEqual([{ 'f:nodeName': {} }]);
    expect((await waitFor<Container>('containers', 'web', runningWithIp))?.spec.nodeName).toBe(
      NODE,
    );

    const info = await ctl?.runtime.find(containerIdFor(NS, 'web'));
    expect(info?.status).toBe('running');
    expect(info?.ip).toBe(c?.status?.ip);

    // The event, as `kubectl get events` (core/v1) and events.k8s.io/v1 see it.
    const until = Date.now() + 10_000;
    let events: {
      reason?: string;
      reportingController?: string;
      reportingInstance?: string;
      regarding?: { name?: string; kind?: string };
    }[] = [];
    while (Date.now() < until) {
      events = (
        JSON.parse(await kubectl(['get', 'events.events.k8s.io', '-n', NS, '-o', 'json'])) as {
          items: typeof events;
        }
      ).items;
      if (events.some((e) => e.reason === 'Started' && e.regarding?.name === 'web')) break;
      await sleep(100);
    }
    const started = events.find((e) => e.reason === 'Started' && e.regarding?.name === 'web');
    expect(started).toMatchObject({
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: NODE,
      regarding: { kind: 'Container', name: 'web' },
    });
    const table = await kubectl(['get', 'events', '-n', NS]);
    expect(table).toMatch(/Started\s+container\/web/);
  }, 90_000);

  it('conductor get and describe --kubeconfig read the API: status, and the Events', async () => {
    const run = async (
      cmd: (argv: string[], io: CliIO) => Promise<number>,
      argv: string[],
    ): Promise<string> => {
      const out: string[] = [];
      const io: CliIO = {
        stdout: (t) => out.push(t),
        stderr: (t) => out.push(t),
        cwd: process.cwd(),
        now: () => new Date(),
        signals: process,
      };
      expect(await cmd([...argv, '--kubeconfig', kubeconfig], io)).toBe(0);
      return out.join('');
    };
    const web = await getObject<Container>('containers', 'web');
    const table = await run(getCommand, ['containers', '-n', NS, '-o', 'wide']);
    expect(table).toMatch(
      new RegExp(`^web\\s+Running\\s+busybox\\s+${web?.status?.ip ?? 'none'}`, 'm'),
    );
    const json = JSON.parse(
      await run(getCommand, ['container', 'web', '-n', NS, '-o', 'json']),
    ) as Container;
    expect(json.status?.containerID).toBe(web?.status?.containerID);
    const all = await run(getCommand, ['all', '-A']);
    expect(all).toContain('image.conductor.dev/busybox');
    const described = await run(describeCommand, ['container', 'web', '-n', NS]);
    expect(described).toMatch(/^Name:\s+web$/m);
    expect(described).toMatch(/Normal\s+Started\s+/);
    // get events: the same events.k8s.io Events, as kubectl get events lists them.
    const events = await run(getCommand, ['events', '-n', NS]);
    expect(events).toMatch(/^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE$/m);
    expect(events).toMatch(/Normal\s+Created\s+container\/web\s+Created container: web$/m);
    expect(events).toMatch(/Normal\s+Started\s+container\/web\s+Started container web$/m);
    const forWeb = JSON.parse(
      await run(getCommand, ['ev', '-A', '--for', 'container/web', '-o', 'json']),
    ) as { items: { reason?: string; reportingController?: string; regarding?: object }[] };
    expect(forWeb.items.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['Created', 'Started']),
    );
    expect(forWeb.items[0]).toMatchObject({
      reportingController: REPORTING_CONTROLLER,
      regarding: { kind: 'Container', name: 'web', namespace: NS },
    });
    // top on the agent's state dir: its objects are the API server's, its containers the node's.
    let topOut = '';
    const topCode = await main(
      ['top', '--no-stream', '-o', 'json', '-n', NS, '--state-dir', stateDir],
      {
        stdout: (t) => void (topOut += t),
        stderr: (t) => void (topOut += t),
        cwd: process.cwd(),
        now: () => new Date(),
        signals: new EventEmitter(),
      },
    );
    expect(topCode).toBe(0);
    expect(JSON.parse(topOut)).toEqual([
      expect.objectContaining({
        namespace: NS,
        name: 'web',
        containerID: web?.status?.containerID,
      }),
    ]);
    // Not there: kubectl's words, exit 1.
    const io: CliIO = {
      stdout: () => undefined,
      stderr: () => undefined,
      cwd: process.cwd(),
      now: () => new Date(),
      signals: process,
    };
    await expect(
      getCommand(['container', 'nope', '-n', NS, '--kubeconfig', kubeconfig], io),
    ).rejects.toThrow('containers.conductor.dev "nope" not found');
  });

  it('refuses a status write from a stale object with ConflictError (409 from the server)', async () => {
    // A client of its own whose informers are then stopped: its cache keeps the object as read,
    // so the write reaches the API server, which answers 409.
    const other = await KubernetesClient.open({ kubeconfig, nodeName: `${NODE}-other`, logger });
    await other.start();
    await other.synced();
    const stale = other.get('Container', `${NS}/web`);
    await other.stop();
    expect(stale?.status?.phase).toBe('Running');
    if (!stale?.status) throw new Error('no status');
    await patchStatusMessage('web', 'someone else');
    await expect(
      other.updateStatus('Container', stale, { ...stale.status, message: 'stale' }),
    ).rejects.toBeInstanceOf(ConflictError);
    // Nothing was written: the message is the other writer's.
    expect((await getObject<Container>('containers', 'web'))?.status?.message).toBe('someone else');
  }, 60_000);

  it('replaces the container on a spec change; a status written meanwhile is a conflict, retried', async () => {
    const id = containerIdFor(NS, 'web');
    const old = await ctl?.runtime.find(id);
    logs.length = 0;
    // PID 1 ignores SIGTERM: the old container takes its whole grace period (3 s) to go, the
    // window in which someone else writes status.
    await kubectl(
      ['apply', '-f', '-'],
      containerJson('web', { env: [{ name: 'V', value: '2' }], terminationGracePeriodSeconds: 3 }),
    );
    await waitFor<Container>('containers', 'web', (o) => o?.status?.reason === 'Replacing', 20_000);
    await patchStatusMessage('web', 'someone else, again');
    const c = await waitFor<Container>(
      'containers',
      'web',
      (o) =>
        runningWithIp(o) &&
        o?.status?.observedGeneration === o?.metadata.generation &&
        o?.status?.message === undefined,
      30_000,
    );
    const now = await ctl?.runtime.find(id);
    expect(now?.status).toBe('running');
    expect(now?.pid).not.toBe(old?.pid);
    expect(c?.status?.pid).toBe(now?.pid);
    const conflicts = logs.filter(
      (l) =>
        l.msg === 'reconciler error' &&
        String(l.fields?.error).includes('has been modified') &&
        l.fields?.key === `${NS}/web`,
    );
    expect(conflicts.length).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('restarts a watch gone silent, re-listing: nothing is missed', async () => {
    const warned: string[] = [];
    const quiet: Logger = { ...logger, info: () => {}, warn: (msg) => warned.push(msg) };
    // The client's watch reconnects after 30 s of quiet; a watchdog shorter than that fires.
    const other = await KubernetesClient.open({
      kubeconfig,
      nodeName: `${NODE}-other`,
      logger: quiet,
      watchdogMs: 500,
    });
    try {
      await other.start();
      await other.synced();
      const until = Date.now() + 10_000;
      while (!warned.some((w) => /^watch of containers silent/.test(w)) && Date.now() < until)
        await sleep(50);
      expect(warned.filter((w) => /^watch of containers silent/.test(w)).length).toBeGreaterThan(0);
      // Bound to the agent's node: the other client (another node's view) caches it without
      // claiming or finalizing it.
      await kubectl(['apply', '-f', '-'], containerJson('watched', { nodeName: NODE }));
      const seen = Date.now() + 10_000;
      // Seen at once, with the finalizer once the agent of its node has added it.
      const finalized = (): boolean =>
        other.get('Container', `${NS}/watched`)?.metadata.finalizers?.includes(FINALIZER) ?? false;
      while (!finalized() && Date.now() < seen) await sleep(20);
      expect(other.get('Container', `${NS}/watched`)?.metadata.finalizers).toContain(FINALIZER);
    } finally {
      await other.stop();
    }
    await waitFor<Container>('containers', 'watched', runningWithIp);
    await kubectl(['delete', 'containers', 'watched', '-n', NS, '--wait=true', '--timeout=60s']);
    expect(await ctl?.runtime.find(containerIdFor(NS, 'watched'))).toBeUndefined();
  }, 60_000);

  it('recovers from an API server restart: its informers come back with back-off', async () => {
    const apiserver = plane().pid('kube-apiserver');
    expect(apiserver).toBeGreaterThan(1);
    logs.length = 0;
    // SIGKILL: a crash, and quicker than its graceful shutdown (tens of seconds).
    process.kill(apiserver, 'SIGKILL');
    const t0 = Date.now();
    const until = Date.now() + 30_000;
    while (!logs.some((l) => /^watching \w+ failed; retrying$/.test(l.msg)) && Date.now() < until)
      await sleep(100);
    expect(logs.some((l) => /^watching \w+ failed; retrying$/.test(l.msg))).toBe(true);
    // Gone, then `up` on the same DIR starts it again; etcd kept running, with the same data.
    const gone = Date.now() + 60_000;
    while (existsSync(`/proc/${apiserver}`) && Date.now() < gone) await sleep(100);
    expect(existsSync(`/proc/${apiserver}`)).toBe(false);
    await plane().start();
    const t1 = Date.now();
    await kubectl(['apply', '-f', '-'], containerJson('after', {}));
    await waitFor<Container>('containers', 'after', runningWithIp, 60_000);
    console.info(
      `API server down for ${t1 - t0} ms; after its restart, kubectl apply → Running in ${Date.now() - t1} ms`,
    );
    const retries = logs.filter((l) => /^watching \w+ failed; retrying$/.test(l.msg));
    console.info(`${retries.length} informer restarts while the API server was away`);
    await kubectl(['delete', 'containers', 'after', '-n', NS, '--wait=true', '--timeout=60s']);
  }, 120_000);

  it('kubectl delete: the host state goes, then the finalizer, then the object', async () => {
    const id = containerIdFor(NS, 'web');
    expect(await ctl?.runtime.find(id)).toBeDefined();
    const t0 = Date.now();
    // --wait: kubectl returns once the object is gone, i.e. once the finalizer is removed.
    await kubectl(['delete', 'containers', 'web', '-n', NS, '--wait=true', '--timeout=60s']);
    console.info(`kubectl delete → object gone in ${Date.now() - t0} ms`);
    expect(await getObject<Container>('containers', 'web')).toBeUndefined();
    expect(await ctl?.runtime.find(id)).toBeUndefined();
  }, 90_000);

  it('objects deleted while the agent is down are cleaned up at the next start', async () => {
    await kubectl(['apply', '-f', '-'], containerJson('late', {}));
    // A Service has no container for the next start to adopt: only its finalizer (leftoverKeys)
    // says it has host state to release (its virtual IP's rules).
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Service',
        metadata: { name: 'late', namespace: NS },
        spec: { selector: { app: 'late' }, ports: [{ port: 80, targetPort: 8080 }] },
      }),
    );
    await waitFor<Container>('containers', 'late', runningWithIp);
    const svc = await waitFor<{ status?: { clusterIP?: string } }>(
      'services.conductor.dev',
      'late',
      (o) => typeof o?.status?.clusterIP === 'string',
    );
    expect(svc?.status?.clusterIP).toMatch(/^10\.80\./);
    const id = containerIdFor(NS, 'late');
    await ctl?.stop();
    ctl = undefined;
    // Held by our finalizer while no agent runs.
    await kubectl(['delete', 'containers', 'late', '-n', NS, '--wait=false']);
    await kubectl(['delete', 'services.conductor.dev', 'late', '-n', NS, '--wait=false']);
    const held = await getObject<Container>('containers', 'late');
    expect(held?.metadata.deletionTimestamp).toBeDefined();
    ctl = await runController(agentOptions());
    await waitFor<Container>('containers', 'late', (o) => o === undefined, 30_000);
    await waitFor('services.conductor.dev', 'late', (o) => o === undefined, 30_000);
    expect(await ctl.runtime.find(id)).toBeUndefined();
  }, 90_000);
});
