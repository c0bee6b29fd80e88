/**
 * The reconcilers' pure logic on the seam's fakes (test/fixtures/fakes.ts): what they ask the
 * runtime core for and write through the client. The integration suites (controller-e2e,
 * controller-restart, images-controller) run the same reconcilers on the real runtime core.
 */
import { describe, expect, it } from '@jest/globals';

import type { Container, Image, Service } from '../../controller/api/types.generated.js';
import { ConflictError, observeEvents } from '../../controller/client/client.js';
import { ContainerReconciler, containerIdFor } from '../../controller/controllers/container.js';
import { ImageReconciler } from '../../controller/controllers/image.js';
import { ConductorMetrics } from '../../controller/metrics/registry.js';
import { ServiceReconciler } from '../../controller/controllers/service.js';
import { TerminalError } from '../../controller/reconcile/result.js';
import { DependencyNotReadyError } from '../../runtime-core/src/index.js';
import { fakeContext, served } from '../fixtures/fakes.js';

const NS = 'unit';
const DIGEST = `sha256:${'a'.repeat(64)}`;
const LAYER = `sha256:${'b'.repeat(64)}`;

function image(name = 'busybox'): Image {
  return served<Image>({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Image',
    metadata: { name, namespace: NS },
    spec: { from: 'scratch', steps: [{ copy: { src: 'rootfs', dest: '/' } }] },
  });
}

const readyStatus = {
  phase: 'Ready' as const,
  observedGeneration: 1,
  digest: DIGEST,
  layers: [{ digest: LAYER, size: 10, createdBy: 'copy rootfs /' }],
  config: { cmd: ['/bin/sh'] },
};

function container(spec: Record<string, unknown> = {}, name = 'web'): Container {
  return served<Container>({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: NS, labels: { app: 'web' }, generation: 1 },
    spec: { image: 'busybox', args: ['sleep', '1000'], ...spec },
  });
}

/** A context with a Ready busybox image. */
async function withImage() {
  const f = fakeContext();
  const img = f.client.apply(image());
  await f.client.updateStatus('Image', img, readyStatus);
  return f;
}

const key = `${NS}/web`;
const id = containerIdFor(NS, 'web');

describe('ContainerReconciler (fakes)', () => {
  it('waits for its Image, then runs on its layers', async () => {
    const f = fakeContext();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container());
    expect(await r.reconcile(key)).toEqual({ kind: 'done' });
    expect(f.runtime.calls).toEqual([]);
    expect(f.client.get('Container', key)?.status).toMatchObject({
      phase: 'Pending',
      reason: 'ImageNotReady',
      message: 'image busybox does not exist',
    });
    const img = f.client.apply(image());
    await r.reconcile(key);
    expect(f.client.get('Container', key)?.status?.message).toBe('image busybox is Pending');
    await f.client.updateStatus('Image', img, readyStatus);
    expect(await r.reconcile(key)).toEqual({ kind: 'done' });
    expect(f.runtime.calls).toEqual([`run ${id}`]);
    expect(f.runtime.containers.get(id)?.layers).toEqual([LAYER]);
    expect(f.runtime.containers.get(id)?.spec.args).toEqual(['sleep', '1000']);
    const st = f.client.get('Container', key)?.status;
    expect(st).toMatchObject({ phase: 'Running', containerID: id, imageID: DIGEST });
    expect(st?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(f.client.events.map((e) => e.reason)).toEqual(['Created', 'Started']);
    // Converged: another pass changes nothing.
    const writes = f.client.writes.length;
    expect(await r.reconcile(key)).toEqual({ kind: 'done' });
    expect(f.runtime.calls).toEqual([`run ${id}`]);
    expect(f.client.writes.length).toBe(writes);
  });

  it('replaces the container when its spec changes, after saying so in status', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container({ terminationGracePeriodSeconds: 7 }));
    await r.reconcile(key);
    const firstPid = f.client.get('Container', key)?.status?.pid;
    f.client.apply(
      container({ terminationGracePeriodSeconds: 7, env: [{ name: 'A', value: '1' }] }),
    );
    await r.reconcile(key);
    expect(f.runtime.calls).toEqual([
      `run ${id}`,
      `stop ${id} grace=7`,
      `remove ${id}`,
      `run ${id}`,
    ]);
    expect(f.runtime.containers.get(id)?.spec.env).toMatchObject({ A: '1' });
    const reasons = f.client.writes
      .filter((w) => w.kind === 'Container')
      .map((w) => (w.status as { reason?: string }).reason);
    expect(reasons).toContain('Replacing');
    const st = f.client.get('Container', key)?.status;
    expect(st).toMatchObject({ phase: 'Running', restartCount: 0 });
    expect(st?.pid).not.toBe(firstPid);
    expect(f.client.events.map((e) => `${e.reason}: ${e.message}`)).toEqual([
      'Created: Created container: web',
      'Started: Started container web',
      'Killing: Container web definition changed, will be restarted',
      'Created: Created container: web',
      'Started: Started container web',
    ]);
    // The old container's exit watch went with it.
    expect(f.runtime.watching).toBe(1);
  });

  it('restarts a crashing container with the kubelet back-off (fake clock)', async () => {
    const f = await withImage();
    const enqueued: string[] = [];
    const r = new ContainerReconciler(f.ctx, (k) => enqueued.push(k));
    f.client.apply(container({ restartPolicy: 'Always' }));
    await r.reconcile(key);
    f.clock.advance(1000);
    f.runtime.exit(id, 3);
    expect(enqueued).toEqual([key]); // the exit watch requeues it
    expect(await r.reconcile(key)).toEqual({ kind: 'requeueAfter', afterMs: 10_000 });
    expect(f.client.get('Container', key)?.status).toMatchObject({
      phase: 'Running',
      reason: 'CrashLoopBackOff',
      exitCode: 3,
      restartCount: 0,
    });
    f.clock.advance(10_000);
    expect(await r.reconcile(key)).toEqual({ kind: 'done' });
    expect(f.client.get('Container', key)?.status).toMatchObject({
      phase: 'Running',
      restartCount: 1,
    });
    // It stays up a minute: the streak ends at 10 min, so look again then.
    f.clock.advance(60_000);
    expect(await r.reconcile(key)).toEqual({ kind: 'requeueAfter', afterMs: 540_000 });
    f.runtime.exit(id, 3);
    expect(await r.reconcile(key)).toEqual({ kind: 'requeueAfter', afterMs: 20_000 });
    expect(f.runtime.calls.filter((c) => c.startsWith('run'))).toHaveLength(2);
  });

  it('leaves an exited container alone when its policy says so', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container({ restartPolicy: 'OnFailure' }));
    await r.reconcile(key);
    f.runtime.exit(id, 0);
    expect(await r.reconcile(key)).toEqual({ kind: 'done' });
    expect(f.client.get('Container', key)?.status).toMatchObject({
      phase: 'Succeeded',
      reason: 'Completed',
      exitCode: 0,
    });
    expect(f.runtime.calls).toEqual([`run ${id}`]);
  });

  it('fails an invalid spec with a terminal error naming the field, without running it', async () => {
    const f = fakeContext();
    const img = f.client.apply(image());
    // An image with no entrypoint or cmd, and a Container that names no command.
    await f.client.updateStatus('Image', img, { ...readyStatus, config: {} });
    const r = new ContainerReconciler(f.ctx, () => undefined);
    const c = container();
    delete c.spec.args;
    f.client.apply(c);
    const err = await r.reconcile(key).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TerminalError);
    expect((err as TerminalError).reason).toBe('InvalidSpec');
    expect((err as Error).message).toBe(
      'spec.command: required, the image has no entrypoint or cmd',
    );
    expect(f.client.get('Container', key)?.status).toMatchObject({
      phase: 'Failed',
      reason: 'InvalidSpec',
    });
    expect(f.runtime.calls).toEqual([]);
  });

  it('reports a failed start and retries it', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container());
    f.runtime.failRun = new Error('exec /bin/sh: ENOENT');
    expect(await r.reconcile(key)).toMatchObject({ kind: 'retry' });
    expect(f.client.get('Container', key)?.status).toMatchObject({
      phase: 'Pending',
      reason: 'CreateContainerError',
      message: 'exec /bin/sh: ENOENT',
    });
    f.runtime.failRun = undefined;
    expect(await r.reconcile(key)).toEqual({ kind: 'done' });
    expect(f.client.get('Container', key)?.status?.phase).toBe('Running');
  });

  it('removes the container, its volumes and its record once the object is gone', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container({ terminationGracePeriodSeconds: 3 }));
    await r.reconcile(key);
    f.client.delete('Container', key);
    expect(await r.reconcile(key)).toEqual({ kind: 'done' });
    expect(f.runtime.calls).toEqual([`run ${id}`, `stop ${id} grace=3`, `remove ${id}`]);
    expect(f.runtime.volumesRemoved).toEqual([id]);
    expect(f.client.finalized).toEqual([`Container/${NS}/web`]);
    expect(f.runtime.watching).toBe(0);
  });

  it('does not write status computed from a spec that changed meanwhile (conflict)', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container());
    f.client.beforeWrite = () => {
      f.client.beforeWrite = undefined;
      f.client.apply(container({ args: ['sleep', '2'] }));
    };
    await expect(r.reconcile(key)).rejects.toBeInstanceOf(ConflictError);
    // Read again, the new spec is what runs.
    await r.reconcile(key);
    expect(f.runtime.containers.get(id)?.spec.args).toEqual(['sleep', '2']);
  });

  it('close() lets go of every exit watch and probe', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container());
    await r.reconcile(key);
    expect(f.runtime.watching).toBe(1);
    await r.close();
    expect(f.runtime.watching).toBe(0);
  });

  it('a restarted controller keeps an adopted container ready until its probe says otherwise', async () => {
    const f = await withImage();
    // The probe never runs during the test: readiness is only what ensure() starts with.
    const probe = { readinessProbe: { exec: { command: ['true'] }, initialDelaySeconds: 600 } };
    f.client.apply(container(probe));
    const first = new ContainerReconciler(f.ctx, () => undefined);
    await first.reconcile(key);
    const readyOf = (): string | undefined =>
      f.client.get('Container', key)?.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    expect(readyOf()).toBe('False'); // a new container is unready until its probe passes
    await first.close();
    // The previous process saw it ready (its probe passed), then the controller restarted.
    const st = f.client.get('Container', key)?.status ?? {};
    const current = f.client.get('Container', key);
    if (!current) throw new Error('no Container');
    await f.client.updateStatus('Container', current, {
      ...st,
      conditions: (st.conditions ?? []).map((c) =>
        c.type === 'Ready' ? { ...c, status: 'True' as const, reason: 'ContainerRunning' } : c,
      ),
    });
    const second = new ContainerReconciler(f.ctx, () => undefined);
    await second.reconcile(key);
    expect(readyOf()).toBe('True');
    await second.close();
    // Another process in its place (a new pid) is not the container that was seen ready.
    const c = f.runtime.containers.get(id);
    if (!c) throw new Error('no fake container');
    c.info = { ...c.info, pid: 4242 };
    const third = new ContainerReconciler(f.ctx, () => undefined);
    await third.reconcile(key);
    expect(readyOf()).toBe('False');
    await third.close();
  });
});

describe('ContainerReconciler: events, each transition once (fakes)', () => {
  const reasons = (f: { client: { events: { reason: string }[] } }): string[] =>
    f.client.events.map((e) => e.reason);

  it('Created and Started when it starts; a restarted controller adopting it says nothing', async () => {
    const f = await withImage();
    f.client.apply(container());
    const first = new ContainerReconciler(f.ctx, () => undefined);
    await first.reconcile(key);
    expect(f.client.events).toEqual([
      {
        kind: 'Container',
        name: 'web',
        type: 'Normal',
        reason: 'Created',
        message: 'Created container: web',
      },
      {
        kind: 'Container',
        name: 'web',
        type: 'Normal',
        reason: 'Started',
        message: 'Started container web',
      },
    ]);
    await first.reconcile(key); // a resync
    await first.close();
    // A new controller process: level-triggered, it finds the container running.
    const second = new ContainerReconciler(f.ctx, () => undefined);
    await second.reconcile(key);
    await second.reconcile(key);
    await second.close();
    expect(reasons(f)).toEqual(['Created', 'Started']);
  });

  it('Killing when a deleted Container is stopped, not when it had already exited', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container());
    await r.reconcile(key);
    f.client.delete('Container', key);
    await r.reconcile(key);
    expect(f.client.events.at(-1)).toEqual({
      kind: 'Container',
      name: 'web',
      type: 'Normal',
      reason: 'Killing',
      message: 'Stopping container web',
    });
    // Another one that exited (Never) before its deletion: nothing to stop, nothing said.
    f.client.apply(container({ restartPolicy: 'Never' }, 'done'));
    const doneKey = `${NS}/done`;
    await r.reconcile(doneKey);
    f.runtime.exit(containerIdFor(NS, 'done'), 0);
    await r.reconcile(doneKey);
    f.client.delete('Container', doneKey);
    await r.reconcile(doneKey);
    expect(reasons(f)).toEqual(['Created', 'Started', 'Killing', 'Created', 'Started']);
  });

  it('BackOff once per back-off, in the same words each time so a crash loop folds', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container({ restartPolicy: 'Always' }));
    await r.reconcile(key);
    f.clock.advance(1000);
    f.runtime.exit(id, 1);
    expect(await r.reconcile(key)).toMatchObject({ kind: 'requeueAfter' });
    // Reconciled again during the back-off (a resync, the Image changing): no second event.
    await r.reconcile(key);
    await new ContainerReconciler(f.ctx, () => undefined).reconcile(key); // a restarted controller
    expect(reasons(f)).toEqual(['Created', 'Started', 'BackOff']);
    expect(f.client.events.at(-1)).toMatchObject({
      type: 'Warning',
      message: 'Back-off restarting failed container web',
    });
    f.clock.advance(10_000);
    await r.reconcile(key); // restarted
    f.clock.advance(1000);
    f.runtime.exit(id, 1);
    await r.reconcile(key);
    expect(reasons(f)).toEqual(['Created', 'Started', 'BackOff', 'Created', 'Started', 'BackOff']);
    const backOffs = f.client.events.filter((e) => e.reason === 'BackOff');
    expect(new Set(backOffs.map((e) => e.message)).size).toBe(1);
  });

  it('OOMKilling when it ended OOM-killed, once, with the terminated reason OOMKilled', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(
      container({ restartPolicy: 'Never', resources: { limits: { memory: '16Mi' } } }),
    );
    await r.reconcile(key);
    f.runtime.exit(id, 137, { oomKilled: true });
    await r.reconcile(key);
    await r.reconcile(key); // level-triggered: the same exit again
    expect(f.client.get('Container', key)?.status).toMatchObject({
      phase: 'Failed',
      reason: 'OOMKilled',
      exitCode: 137,
    });
    expect(f.client.events.filter((e) => e.reason === 'OOMKilling')).toEqual([
      {
        kind: 'Container',
        name: 'web',
        type: 'Warning',
        reason: 'OOMKilling',
        message: 'Memory cgroup out of memory: container web was OOM-killed (memory limit 16Mi)',
      },
    ]);
  });

  it('OOMKilling then BackOff for a container its policy restarts', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container({ restartPolicy: 'Always' }));
    await r.reconcile(key);
    f.runtime.exit(id, 137, { oomKilled: true });
    await r.reconcile(key);
    await r.reconcile(key);
    expect(reasons(f)).toEqual(['Created', 'Started', 'OOMKilling', 'BackOff']);
    expect(f.client.get('Container', key)?.status?.message).toContain('last exit: OOMKilled');
  });

  it('Killing when its liveness probe fails, naming the container', async () => {
    const f = await withImage();
    const r = new ContainerReconciler(f.ctx, () => undefined);
    f.runtime.probeOutcome = { ok: false, message: 'exit status 1' };
    f.client.apply(
      container({
        livenessProbe: {
          exec: { command: ['false'] },
          initialDelaySeconds: 0,
          periodSeconds: 1,
          failureThreshold: 1,
        },
      }),
    );
    await r.reconcile(key);
    for (let i = 0; i < 50 && !reasons(f).includes('Killing'); i++)
      await new Promise((res) => setTimeout(res, 10));
    expect(f.client.events.slice(2)).toEqual([
      {
        kind: 'Container',
        name: 'web',
        type: 'Warning',
        reason: 'Unhealthy',
        message: 'Liveness probe failed: exit status 1',
      },
      {
        kind: 'Container',
        name: 'web',
        type: 'Normal',
        reason: 'Killing',
        message: 'Container web failed liveness probe, will be restarted',
      },
    ]);
    await r.close();
  });
});

describe('conductor_events_total (fakes)', () => {
  it('counts every event recorded through the observed client, repeats included', async () => {
    const f = await withImage();
    const metrics = new ConductorMetrics({ defaultMetrics: false });
    const ctx = {
      ...f.ctx,
      client: observeEvents(f.client, (kind, type, reason) =>
        metrics.events.inc({ kind, type, reason }),
      ),
    };
    const r = new ContainerReconciler(ctx, () => undefined);
    f.client.apply(container({ restartPolicy: 'Always' }));
    await r.reconcile(key);
    for (let i = 0; i < 2; i++) {
      f.clock.advance(1000);
      f.runtime.exit(id, 1);
      await r.reconcile(key); // back-off
      f.clock.advance(60_000);
      await r.reconcile(key); // restarted
    }
    const counts = Object.fromEntries(
      (await metrics.events.get()).values.map((v) => [
        `${v.labels.kind}/${v.labels.type}/${v.labels.reason}`,
        v.value,
      ]),
    );
    expect(counts).toEqual({
      'Container/Normal/Created': 3,
      'Container/Normal/Started': 3,
      'Container/Warning/BackOff': 2,
    });
    // What the client recorded is what was counted.
    expect(f.client.events).toHaveLength(8);
    expect(await metrics.scrape()).toContain(
      'conductor_events_total{kind="Container",type="Warning",reason="BackOff"} 2\n',
    );
    await r.close();
  });
});

describe('ContainerReconciler: the first readiness probe (fakes)', () => {
  const readiness = (initialDelaySeconds: number) => ({
    readinessProbe: {
      exec: { command: ['true'] },
      initialDelaySeconds,
      periodSeconds: 600,
      timeoutSeconds: 1,
      successThreshold: 1,
      failureThreshold: 3,
    },
  });
  /** The Ready condition of each status the Container was written with, in order. */
  const readyWrites = (f: Awaited<ReturnType<typeof withImage>>): (string | undefined)[] =>
    f.client.writes
      .filter((w) => w.kind === 'Container')
      .map((w) => (w.status as Container['status'])?.conditions?.find((c) => c.type === 'Ready'))
      .map((c) => c?.status);

  it('a container ready at once is written Running and Ready in one status write', async () => {
    const f = await withImage();
    f.client.apply(container(readiness(0)));
    const r = new ContainerReconciler(f.ctx, () => undefined);
    await r.reconcile(key);
    expect(f.runtime.calls).toEqual([`run ${id}`, `probe ${id} exec`]);
    expect(readyWrites(f)).toEqual(['True']);
    expect(f.client.get('Container', key)?.status?.phase).toBe('Running');
    await r.close();
  });

  it('a first probe that fails, or has not answered within the wait, is written Ready False', async () => {
    const f = await withImage();
    f.runtime.probeOutcome = { ok: false, message: 'connection refused' };
    f.client.apply(container(readiness(0)));
    const r = new ContainerReconciler(f.ctx, () => undefined);
    await r.reconcile(key);
    expect(readyWrites(f)).toEqual(['False']);
    await r.close();

    const g = await withImage();
    let answer!: () => void;
    g.runtime.probeHeld = new Promise((resolve) => (answer = resolve));
    g.client.apply(container(readiness(0)));
    const changed: string[] = [];
    const slow = new ContainerReconciler(g.ctx, (k) => changed.push(k));
    await slow.reconcile(key); // returns after the wait, the probe still in flight
    expect(readyWrites(g)).toEqual(['False']);
    answer();
    for (let i = 0; i < 50 && changed.length === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(changed).toEqual([key]); // the reconcile that writes Ready True follows
    await slow.close();
  });

  it('a probe with an initial delay does not hold the Running status', async () => {
    const f = await withImage();
    f.client.apply(container(readiness(600)));
    const r = new ContainerReconciler(f.ctx, () => undefined);
    await r.reconcile(key);
    expect(f.runtime.calls).toEqual([`run ${id}`]);
    expect(readyWrites(f)).toEqual(['False']);
    await r.close();
  });
});

describe('ServiceReconciler (fakes)', () => {
  it('lists the matching Containers of its namespace as endpoints, with their readiness', async () => {
    const f = await withImage();
    const cr = new ContainerReconciler(f.ctx, () => undefined);
    f.client.apply(container({}, 'web'));
    f.client.apply(container({}, 'web2'));
    f.client.apply({
      ...container({}, 'db'),
      metadata: { ...container({}, 'db').metadata, labels: { app: 'db' } },
    });
    await cr.reconcile(`${NS}/web`);
    const svc = f.client.apply(
      served<Service>({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Service',
        metadata: { name: 'web', namespace: NS },
        spec: { selector: { app: 'web' }, ports: [{ port: 80 }] },
      }),
    );
    const sr = new ServiceReconciler(f.ctx);
    await sr.reconcile(`${NS}/web`);
    let st = f.client.get('Service', `${NS}/web`)?.status;
    const webIp = f.client.get('Container', `${NS}/web`)?.status?.ip;
    expect(webIp).toMatch(/^10\.77\.0\.\d+$/);
    expect(st?.endpoints).toEqual([
      { name: 'web', ready: true, ip: webIp },
      { name: 'web2', ready: false },
    ]);
    expect(st?.conditions?.[0]).toMatchObject({
      status: 'True',
      message: '1 of 2 endpoints ready',
    });
    // A ClusterIP from the service range; the table gets the ready endpoint on the target
    // port; DNS has the Service's name (and not the same-named Container's).
    const clusterIP = st?.clusterIP ?? '';
    expect(clusterIP).toMatch(/^10\.78\.\d+\.\d+$/);
    expect(f.runtime.services.get(`${NS}/web`)).toEqual({
      key: `${NS}/web`,
      clusterIP,
      ports: [{ protocol: 'TCP', port: 80, endpoints: [{ ip: webIp, port: 80 }] }],
    });
    expect(f.runtime.dns.get(`svc.${NS}.web`)).toEqual([
      { name: `web.${NS}.svc.cluster.local`, ip: clusterIP },
    ]);
    expect(f.runtime.dns.has(`ctr.${NS}.web`)).toBe(false);
    await cr.reconcile(`${NS}/web2`);
    await sr.reconcile(`${NS}/web`);
    st = f.client.get('Service', `${NS}/web`)?.status;
    expect(st?.endpoints?.every((e) => e.ready)).toBe(true);
    expect(st?.clusterIP).toBe(clusterIP); // kept
    expect(f.runtime.services.get(`${NS}/web`)?.ports[0]?.endpoints).toHaveLength(2);
    f.client.delete('Service', `${NS}/web`);
    await sr.reconcile(`${NS}/web`);
    expect(f.client.finalized).toContain(`Service/${NS}/web`);
    expect(f.runtime.services.has(`${NS}/web`)).toBe(false);
    expect(f.runtime.dns.has(`svc.${NS}.web`)).toBe(false);
    // The Container has its name back.
    expect(f.runtime.dns.get(`ctr.${NS}.web`)).toEqual([
      { name: `web.${NS}.svc.cluster.local`, ip: webIp },
    ]);
    expect(svc.metadata.name).toBe('web');
  });
});

describe('ImageReconciler (fakes)', () => {
  it('waits for the image it is built on, then records the build', async () => {
    const f = fakeContext();
    const r = new ImageReconciler(f.ctx, () => undefined);
    f.client.apply(
      served<Image>({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Image',
        metadata: { name: 'app', namespace: NS },
        spec: { from: 'image:busybox', steps: [{ run: 'true' }] },
      }),
    );
    f.runtime.build = () => Promise.reject(new DependencyNotReadyError('busybox'));
    expect(await r.reconcile(`${NS}/app`)).toEqual({ kind: 'done' });
    expect(f.client.get('Image', `${NS}/app`)?.status).toMatchObject({ phase: 'Pending' });
    expect(f.client.get('Image', `${NS}/app`)?.status?.conditions?.[0]?.reason).toBe(
      'BaseImageNotReady',
    );
    f.runtime.build = (req) => {
      expect(req.from).toBe('image:busybox');
      return Promise.resolve({
        digest: DIGEST,
        layers: [{ key: 'b'.repeat(64), size: 10, createdBy: 'run true' }],
        config: { cmd: ['/bin/sh'] },
        stepsRun: 1,
        stepsCached: 0,
      });
    };
    expect(await r.reconcile(`${NS}/app`)).toEqual({ kind: 'done' });
    expect(f.client.get('Image', `${NS}/app`)?.status).toMatchObject({
      phase: 'Ready',
      digest: DIGEST,
      layers: [{ digest: LAYER, size: 10 }],
      stepsRun: 1,
    });
    expect(f.client.events.map((e) => e.reason)).toEqual(['Built']);
    // Ready and unchanged: no second build.
    await r.reconcile(`${NS}/app`);
    expect(f.runtime.calls.filter((c) => c.startsWith('build'))).toHaveLength(2);
    await r.close();
  });

  it('a status write that loses to a spec change is retried, never recorded as a failed build', async () => {
    const f = fakeContext();
    const r = new ImageReconciler(f.ctx, () => undefined);
    f.client.apply(image('app'));
    f.runtime.build = () => {
      // The spec changes while the build runs: its result describes the old spec.
      f.client.apply({ ...image('app'), spec: { ...image('app').spec, config: { cmd: ['x'] } } });
      return Promise.resolve({
        digest: DIGEST,
        layers: [{ key: 'b'.repeat(64), size: 10, createdBy: 'copy' }],
        config: {},
        stepsRun: 1,
        stepsCached: 0,
      });
    };
    await expect(r.reconcile(`${NS}/app`)).rejects.toBeInstanceOf(ConflictError);
    expect(f.client.get('Image', `${NS}/app`)?.status?.phase).not.toBe('Failed');
    expect(f.client.events.map((e) => e.reason)).toEqual([]);
    await r.close();
  });

  it('phases reported back to back are written one after the other, not racing', async () => {
    const f = fakeContext();
    const r = new ImageReconciler(f.ctx, () => undefined);
    f.client.apply(image('app'));
    const phases: (string | undefined)[] = [];
    f.runtime.build = async (req) => {
      // A cached base: Pulling and Building in the same tick, as the builder reports them.
      req.onProgress?.({ type: 'phase', phase: 'Pulling' });
      req.onProgress?.({ type: 'phase', phase: 'Building' });
      await new Promise((res) => setTimeout(res, 5));
      phases.push(f.client.get('Image', `${NS}/app`)?.status?.phase);
      return {
        digest: DIGEST,
        layers: [{ key: 'b'.repeat(64), size: 10, createdBy: 'copy' }],
        config: {},
        stepsRun: 1,
        stepsCached: 0,
      };
    };
    expect(await r.reconcile(`${NS}/app`)).toEqual({ kind: 'done' });
    expect(phases).toEqual(['Building']);
    expect(f.client.get('Image', `${NS}/app`)?.status?.phase).toBe('Ready');
    await r.close();
  });

  it('Pulling and Pulled while a base is fetched; "already present" when it is cached', async () => {
    const f = fakeContext();
    const r = new ImageReconciler(f.ctx, () => undefined);
    const pulledImage = (name: string): Image =>
      served<Image>({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Image',
        metadata: { name, namespace: NS },
        spec: { from: 'docker.io/library/busybox:1.36', steps: [{ run: 'true' }] },
      });
    let fetch = true;
    f.runtime.build = (req) => {
      req.onProgress?.({ type: 'phase', phase: 'Pulling' });
      if (fetch) {
        req.onProgress?.({ type: 'output', line: 'Copying blob sha256:abc' });
        req.onProgress?.({ type: 'layer', digest: 'sha256:abc', size: 1, state: 'unpacking' });
      } else {
        req.onProgress?.({ type: 'layer', digest: 'sha256:abc', size: 1, state: 'present' });
      }
      req.onProgress?.({ type: 'phase', phase: 'Building' });
      req.onProgress?.({ type: 'output', line: 'step output', step: 0 });
      return Promise.resolve({
        digest: DIGEST,
        layers: [{ key: 'b'.repeat(64), size: 10, createdBy: 'run true' }],
        config: {},
        stepsRun: 1,
        stepsCached: 0,
      });
    };
    f.client.apply(pulledImage('app'));
    expect(await r.reconcile(`${NS}/app`)).toEqual({ kind: 'done' });
    const said = (): string[] => f.client.events.map((e) => `${e.reason}: ${e.message}`);
    expect(said()).toEqual([
      'Pulling: Pulling image "docker.io/library/busybox:1.36"',
      expect.stringMatching(
        /^Pulled: Successfully pulled image "docker\.io\/library\/busybox:1\.36" in \d+\.\d{3}s$/,
      ),
      `Built: image app built: ${DIGEST}`,
    ]);
    // Another Image on the same base, now in the caches: the kubelet's "already present".
    fetch = false;
    f.client.apply(pulledImage('other'));
    await r.reconcile(`${NS}/other`);
    expect(said().slice(3)).toEqual([
      'Pulled: Container image "docker.io/library/busybox:1.36" already present on machine',
      `Built: image other built: ${DIGEST}`,
    ]);
    // A Ready image checked again (a restarted controller: its layers looked at) is no
    // transition: nothing said.
    f.runtime.hasLayers = () => Promise.resolve(false);
    await new ImageReconciler(f.ctx, () => undefined).reconcile(`${NS}/app`);
    expect(f.client.events).toHaveLength(5);
    await r.close();
  });

  it('a failed build is terminal until something changes', async () => {
    const f = fakeContext();
    const r = new ImageReconciler(f.ctx, () => undefined);
    f.client.apply(image('bad'));
    f.runtime.build = () => Promise.reject(new Error('step 1: copy rootfs: not found'));
    expect(await r.reconcile(`${NS}/bad`)).toMatchObject({ kind: 'terminal' });
    expect(f.client.get('Image', `${NS}/bad`)?.status).toMatchObject({
      phase: 'Failed',
      message: 'step 1: copy rootfs: not found',
    });
    expect(f.client.events.map((e) => e.reason)).toEqual(['BuildFailed']);
    await r.close();
  });
});
