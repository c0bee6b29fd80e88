/**
 * The watch-directory controller end to end, in-process, against the real runtime core:
 * manifests in → containers running with status; spec change → replaced; file removed → gone;
 * bad input → reported, nothing else disturbed; crash loops back off; many containers converge;
 * /metrics carries controller-runtime's names.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Container, Image, Service } from '../../controller/api/types.generated.js';
import type { RunningController } from '../../controller/manager.js';
import { ControllerHarness, busyboxImage, containerManifest } from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('ce');
let h: ControllerHarness;
let before: HostSnapshot;

beforeAll(async () => {
  before = hostSnapshot();
  h = await ControllerHarness.create(NS);
  await h.write('image.yaml', busyboxImage(NS));
  await h.start({ restartBackoff: { initialMs: 300, maxMs: 1200, resetMs: 60_000 } });
  await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready');
}, 60_000);

afterAll(async () => {
  await h.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

function ctl(): RunningController {
  if (!h.ctl) throw new Error('the controller is not running');
  return h.ctl;
}

const running = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' && o.status.conditions?.[0]?.status === 'True';

describe('containers from manifests', () => {
  it('runs a container and fills its status', async () => {
    await h.write(
      'web.yaml',
      containerManifest(
        NS,
        'web',
        { command: ['/bin/sh', '-c', 'echo hi; sleep 1000'] },
        { app: 'web' },
      ),
    );
    const c = await h.waitFor<Container>('Container', 'web', running);
    expect(c?.status).toMatchObject({
      phase: 'Running',
      observedGeneration: 1,
      containerID: `${NS}_web`,
      restartCount: 0,
    });
    expect(c?.status?.pid).toBeGreaterThan(1);
    expect(Date.parse(c?.status?.startedAt ?? '')).not.toBeNaN();
    const logs: string[] = [];
    for await (const l of ctl().runtime.logs(`${NS}_web`, {})) logs.push(l.line);
    expect(logs).toEqual(['hi']);
  });

  it('replaces the container when its spec changes', async () => {
    const first = await h.waitFor<Container>('Container', 'web', running);
    await h.write(
      'web.yaml',
      containerManifest(
        NS,
        'web',
        { command: ['/bin/sh', '-c', 'echo v2; sleep 1000'] },
        { app: 'web' },
      ),
    );
    // While the old one has its grace period (1 s: sh as PID 1 ignores SIGTERM), status says
    // so at once, not what it said before the change.
    const replacing = await h.waitFor<Container>(
      'Container',
      'web',
      (o) => o?.status?.reason === 'Replacing',
    );
    expect(replacing?.status).toMatchObject({ phase: 'Running', observedGeneration: 2 });
    expect(replacing?.status?.conditions?.[0]).toMatchObject({
      status: 'False',
      reason: 'Replacing',
    });
    const second = await h.waitFor<Container>(
      'Container',
      'web',
      (o) =>
        running(o) && o?.status?.observedGeneration === 2 && o.status.pid !== first?.status?.pid,
    );
    expect(second?.metadata.generation).toBe(2);
    expect(second?.status?.reason).toBeUndefined();
    // Ready since the new container started, not since the replaced one did.
    const readySince = Date.parse(second?.status?.conditions?.[0]?.lastTransitionTime ?? '');
    expect(readySince).toBeGreaterThanOrEqual(Date.parse(second?.status?.startedAt ?? '') - 1);
    const alive = await ctl().runtime.list();
    expect(alive.filter((i) => i.id === `${NS}_web` && i.status === 'running')).toHaveLength(1);
  });

  it('computes Service endpoints from the matching ready containers', async () => {
    await h.write(
      'svc.yaml',
      `apiVersion: conductor.dev/v1alpha1\nkind: Service\nmetadata: {name: web, namespace: ${NS}}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n`,
    );
    const svc = await h.waitFor<Service>(
      'Service',
      'web',
      (o) => (o?.status?.endpoints?.length ?? 0) === 1,
    );
    const ip = (await h.object<Container>('Container', 'web'))?.status?.ip;
    expect(ip).toMatch(/^10\.79\.\d+\.\d+$/);
    expect(svc?.status?.endpoints).toEqual([{ name: 'web', ready: true, ip }]);
    expect(svc?.status?.clusterIP).toMatch(/^10\.80\.\d+\.\d+$/);
  });

  it('removes everything a deleted file defined', async () => {
    await h.remove('web.yaml');
    await h.waitFor('Container', 'web', (o) => o === undefined);
    expect((await ctl().runtime.list()).map((i) => i.id)).not.toContain(`${NS}_web`);
    await h.waitFor<Service>('Service', 'web', (o) => o?.status?.endpoints?.length === 0);
    await h.remove('svc.yaml');
    await h.waitFor('Service', 'web', (o) => o === undefined);
  });
});

describe('images', () => {
  it('builds an image once per content, and forgets a deleted one', async () => {
    await h.write('img2.yaml', busyboxImage(NS, 'second'));
    const second = await h.waitFor<Image>('Image', 'second', (o) => o?.status?.phase === 'Ready');
    const first = await h.object<Image>('Image', 'busybox');
    // Same step, same content, same parent: the same layer, stored once.
    expect(second?.status?.layers).toEqual(first?.status?.layers);
    await h.remove('img2.yaml');
    await h.waitFor('Image', 'second', (o) => o === undefined);
  });

  it('refuses a copy source that escapes the manifest directory', async () => {
    await h.write(
      'escape.yaml',
      `apiVersion: conductor.dev/v1alpha1\nkind: Image\nmetadata: {name: escape, namespace: ${NS}}\nspec:\n  from: scratch\n  steps: [{copy: {src: ../../.., dest: /}}]\n`,
    );
    const failed = await h.waitFor<Image>('Image', 'escape', (o) => o?.status?.phase === 'Failed');
    expect(failed?.status?.message).toContain('resolves outside the manifest');
    expect(failed?.status?.failedStep).toBe(0);
    await h.remove('escape.yaml');
    await h.waitFor('Image', 'escape', (o) => o === undefined);
  });
});

describe('bad input', () => {
  it('reports invalid YAML and schema errors, keeping what the file defined before', async () => {
    await h.write('keep.yaml', containerManifest(NS, 'keep', { command: ['sleep', '1000'] }));
    const kept = await h.waitFor<Container>('Container', 'keep', running);
    await h.write(
      'keep.yaml',
      'apiVersion: conductor.dev/v1alpha1\nkind: Container\nmetadata: {name: keep\n',
    );
    await h.write(
      'bad.yaml',
      containerManifest(NS, 'bad', { restartPolicy: 'Sometimes', command: ['true'] }),
    );
    const sources = async (): Promise<
      Record<string, { errors: { message: string; path?: string }[] }>
    > => {
      const { readFile } = await import('node:fs/promises');
      return (
        JSON.parse(await readFile(`${h.stateDir}/sources.json`, 'utf8')) as {
          files: Record<string, { errors: { message: string; path?: string }[] }>;
        }
      ).files;
    };
    for (let i = 0; i < 400; i++) {
      const s = await sources().catch(
        () => ({}) as Record<string, { errors: { message: string }[] }>,
      );
      if ((s['keep.yaml']?.errors.length ?? 0) > 0 && (s['bad.yaml']?.errors.length ?? 0) > 0)
        break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const s = await sources();
    expect(s['bad.yaml']?.errors[0]).toMatchObject({
      path: 'spec.restartPolicy',
      message: expect.stringContaining('Unsupported value: "Sometimes"'),
    });
    expect(s['keep.yaml']?.errors.length).toBeGreaterThan(0);
    // The broken file's container runs on, untouched; the invalid one never ran.
    const still = await h.object<Container>('Container', 'keep');
    expect(still?.status?.pid).toBe(kept?.status?.pid);
    expect(await h.object('Container', 'bad')).toBeUndefined();
    await h.remove('bad.yaml');
    await h.remove('keep.yaml');
    await h.waitFor('Container', 'keep', (o) => o === undefined);
  });

  it('rejects a second file defining the same object, naming both', async () => {
    await h.write('one.yaml', containerManifest(NS, 'dup', { command: ['sleep', '1000'] }));
    await h.waitFor<Container>('Container', 'dup', running);
    await h.write('two.yaml', containerManifest(NS, 'dup', { command: ['sleep', '2000'] }));
    const { readFile } = await import('node:fs/promises');
    let message = '';
    for (let i = 0; i < 400 && !message; i++) {
      const files = (
        JSON.parse(
          await readFile(`${h.stateDir}/sources.json`, 'utf8').catch(() => '{"files":{}}'),
        ) as { files: Record<string, { errors: { message: string }[] }> }
      ).files;
      message = files['two.yaml']?.errors[0]?.message ?? '';
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(message).toContain('one.yaml');
    expect((await h.object<Container>('Container', 'dup'))?.spec.command).toEqual([
      'sleep',
      '1000',
    ]);
    await h.remove('two.yaml');
    await h.remove('one.yaml');
    await h.waitFor('Container', 'dup', (o) => o === undefined);
  });
});

describe('restartPolicy', () => {
  it('backs off a crashing container (CrashLoopBackOff) and counts restarts', async () => {
    await h.write(
      'crash.yaml',
      containerManifest(NS, 'crash', {
        command: ['/bin/sh', '-c', 'exit 3'],
        restartPolicy: 'Always',
      }),
    );
    const backoff = await h.waitFor<Container>(
      'Container',
      'crash',
      (o) => o?.status?.reason === 'CrashLoopBackOff' && (o.status.restartCount ?? 0) >= 2,
    );
    expect(backoff?.status?.exitCode).toBe(3);
    expect(backoff?.status?.message).toContain('back-off');
    await h.remove('crash.yaml');
    await h.waitFor('Container', 'crash', (o) => o === undefined);
  });

  it('records a completed container that must not restart', async () => {
    await h.write(
      'once.yaml',
      containerManifest(NS, 'once', {
        command: ['/bin/sh', '-c', 'exit 0'],
        restartPolicy: 'OnFailure',
      }),
    );
    const c = await h.waitFor<Container>(
      'Container',
      'once',
      (o) => o?.status?.phase === 'Succeeded',
    );
    expect(c?.status).toMatchObject({ reason: 'Completed', exitCode: 0, restartCount: 0 });
    await h.write(
      'oom.yaml',
      containerManifest(NS, 'oom', {
        command: ['tail', '/dev/zero'],
        restartPolicy: 'Never',
        resources: { limits: { memory: '32Mi' } },
      }),
    );
    const oom = await h.waitFor<Container>(
      'Container',
      'oom',
      (o) => o?.status?.phase === 'Failed',
    );
    expect(oom?.status).toMatchObject({ reason: 'OOMKilled', exitCode: 137 });
    await h.remove('once.yaml');
    await h.remove('oom.yaml');
    await h.waitFor('Container', 'oom', (o) => o === undefined);
  });
});

describe('probes', () => {
  const ready = (o: Container | undefined): boolean | undefined =>
    o?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

  it('holds a container unready until its exec readiness probe passes', async () => {
    await h.write(
      'probed.yaml',
      containerManifest(NS, 'probed', {
        command: ['sleep', '1000'],
        readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1 },
      }),
    );
    const unready = await h.waitFor<Container>(
      'Container',
      'probed',
      (o) => o?.status?.phase === 'Running',
    );
    expect(ready(unready)).toBe(false);
    const touched = await ctl().runtime.execOutput(`${NS}_probed`, ['touch', '/tmp/ready']);
    expect(touched.exitCode).toBe(0);
    await h.waitFor<Container>('Container', 'probed', (o) => ready(o) === true);
    await h.remove('probed.yaml');
    await h.waitFor('Container', 'probed', (o) => o === undefined);
  });

  it('probes HTTP to the container’s IP, and restarts on a failing liveness probe', async () => {
    await h.write(
      'http.yaml',
      containerManifest(NS, 'http', {
        command: [
          '/bin/sh',
          '-c',
          'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www',
        ],
        ports: [{ name: 'web', containerPort: 8080 }],
        readinessProbe: { httpGet: { path: '/', port: 'web' }, periodSeconds: 1 },
        // Nothing listens on 9999: killed after two failures, then restarted (Always).
        livenessProbe: {
          tcpSocket: { port: 9999 },
          initialDelaySeconds: 1,
          periodSeconds: 1,
          failureThreshold: 2,
        },
      }),
    );
    await h.waitFor<Container>('Container', 'http', (o) => ready(o) === true);
    await h.waitFor<Container>('Container', 'http', (o) => (o?.status?.restartCount ?? 0) >= 1);
    const { readFile } = await import('node:fs/promises');
    const events = await readFile(`${h.stateDir}/events/containers/${NS}/http.jsonl`, 'utf8');
    // From the node to the container's address (in the suite's range), as the kubelet probes.
    expect(events).toMatch(/Liveness probe failed: dial tcp 10\.79\.\d+\.\d+:9999/);
    await h.remove('http.yaml');
    await h.waitFor('Container', 'http', (o) => o === undefined);
  });
});

describe('scale and metrics', () => {
  it('converges 50 containers from one directory', async () => {
    const docs = Array.from({ length: 50 }, (_, i) =>
      containerManifest(NS, `many-${i}`, { command: ['sleep', '1000'] }),
    );
    await h.write('many.yaml', docs.join('\n---\n'));
    for (let i = 0; i < 50; i++)
      await h.waitFor<Container>('Container', `many-${i}`, running, 120_000);
    const ids = (await ctl().runtime.list()).filter(
      (c) => c.id.startsWith(`${NS}_many-`) && c.status === 'running',
    );
    expect(ids).toHaveLength(50);
    await h.remove('many.yaml');
    for (let i = 0; i < 50; i++)
      await h.waitFor('Container', `many-${i}`, (o) => o === undefined, 120_000);
  }, 300_000);

  it('serves controller-runtime metric names on /metrics', async () => {
    const { host, port } = ctl().metricsAddress;
    const text = await (await fetch(`http://${host}:${port}/metrics`)).text();
    for (const name of [
      'controller_runtime_reconcile_total{controller="container",result="success"}',
      'controller_runtime_reconcile_errors_total',
      'controller_runtime_reconcile_time_seconds_bucket',
      'workqueue_depth',
      'workqueue_adds_total',
      'workqueue_queue_duration_seconds_bucket',
      'workqueue_work_duration_seconds_bucket',
      'workqueue_retries_total',
      'conductor_manifest_errors_total',
    ]) {
      expect(text).toContain(name);
    }
    // A file that never failed has its series at 0 (alerts see its first error); a removed
    // file's is gone.
    expect(text).toContain('conductor_manifest_errors_total{file="image.yaml"} 0\n');
    expect(text).not.toContain('file="many.yaml"');
    expect((await fetch(`http://${host}:${port}/readyz`)).status).toBe(200);
  });

  it('reconciles every object again each resync period, with nothing changed', async () => {
    const reconciles = async (): Promise<number> => {
      const { host, port } = ctl().metricsAddress;
      const text = await (await fetch(`http://${host}:${port}/metrics`)).text();
      const line = text
        .split('\n')
        .find((l) =>
          l.startsWith('controller_runtime_reconcile_total{controller="image",result="success"}'),
        );
      return Number(line?.split(' ').pop() ?? 0);
    };
    const opts = { restartBackoff: { initialMs: 300, maxMs: 1200, resetMs: 60_000 } };
    await h.stop();
    try {
      await h.start({ ...opts, resyncPeriodMs: 200 });
      await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready');
      const first = await reconciles();
      await new Promise((r) => setTimeout(r, 1000));
      // About five periods: the one Image was reconciled again without any change.
      expect((await reconciles()) - first).toBeGreaterThanOrEqual(3);
      await h.stop();
      // Off: nothing is reconciled when nothing changes.
      await h.start({ ...opts, resyncPeriodMs: 0 });
      await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready');
      await new Promise((r) => setTimeout(r, 300)); // the start-up reconciles done
      const quiet = await reconciles();
      await new Promise((r) => setTimeout(r, 700));
      expect(await reconciles()).toBe(quiet);
    } finally {
      await h.stop();
      await h.start(opts);
    }
  }, 60_000);
});
