/**
 * The metrics and health server, scraped over real HTTP while a real Controller (real queue,
 * real clock, default rate limiter: retries after 5 ms) reconciles, and the scrape checked with
 * promtool. Needs no root.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';

import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';

import { ConductorMetrics, MetricsServer, parseAddr } from '../../controller/metrics/index.js';
import {
  Controller,
  DisposableStore,
  done,
  retry,
  terminal,
  type Reconciler,
  type Result,
} from '../../controller/reconcile/index.js';

let owned = new DisposableStore();
beforeEach(() => {
  owned = new DisposableStore();
});
afterEach(() => owned.dispose());

async function startServer(metrics: ConductorMetrics) {
  const server = new MetricsServer({ metrics, addr: '127.0.0.1:0' });
  const { host, port } = await server.start();
  owned.defer(() => server.stop());
  expect(host).toBe('127.0.0.1');
  expect(port).toBeGreaterThan(0);
  return { server, base: `http://127.0.0.1:${port}`, port };
}

/** The value of one sample in a text exposition, labels compared as a set. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(
      ([, k, v]) => [k, v],
    );
    if (JSON.stringify(got.sort()) === want) return Number(m[3]);
  }
  return undefined;
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('metrics server', () => {
  it('serves controller-runtime and workqueue metrics from a running controller', async () => {
    const metrics = new ConductorMetrics();
    const { base } = await startServer(metrics);
    const name = `it-${randomUUID().slice(0, 8)}`;

    const settled = { ok: deferred(), flaky: deferred(), bad: deferred() };
    let flakyCalls = 0;
    const reconciler: Reconciler<string> = {
      async reconcile(key): Promise<Result> {
        switch (key) {
          case 'default/ok':
            settled.ok.resolve();
            return done();
          case 'default/flaky':
            if (++flakyCalls === 1) return retry(new Error('not yet'));
            settled.flaky.resolve();
            return done();
          default:
            settled.bad.resolve();
            return terminal(new Error('invalid spec'));
        }
      },
    };
    const controller = new Controller<string>({
      name,
      reconciler,
      concurrency: 2,
      queueMetrics: metrics.queueMetricsProvider,
      reconcileMetrics: metrics.reconcileMetrics,
    });
    owned.defer(() => controller.stop());
    controller.start();
    for (const key of ['default/ok', 'default/flaky', 'default/bad']) controller.queue.add(key);
    await Promise.all([settled.ok.promise, settled.flaky.promise, settled.bad.promise]);
    // The last reconcile's result is routed right after it returns; a stop drains it.
    await controller.stop();
    metrics.manifestErrors.inc({ file: '/etc/conductor/manifests/broken.yaml' });

    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();

    const c = { controller: name };
    const q = { name, controller: name };
    expect(sample(text, 'controller_runtime_reconcile_total', { ...c, result: 'success' })).toBe(2);
    expect(sample(text, 'controller_runtime_reconcile_total', { ...c, result: 'error' })).toBe(2);
    expect(sample(text, 'controller_runtime_reconcile_total', { ...c, result: 'requeue' })).toBe(0);
    expect(
      sample(text, 'controller_runtime_reconcile_total', { ...c, result: 'requeue_after' }),
    ).toBe(0);
    expect(sample(text, 'controller_runtime_reconcile_errors_total', c)).toBe(2);
    expect(sample(text, 'controller_runtime_terminal_reconcile_errors_total', c)).toBe(1);
    expect(sample(text, 'controller_runtime_reconcile_time_seconds_count', c)).toBe(4);
    expect(
      sample(text, 'controller_runtime_reconcile_time_seconds_bucket', { ...c, le: '+Inf' }),
    ).toBe(4);
    expect(sample(text, 'controller_runtime_max_concurrent_reconciles', c)).toBe(2);
    expect(sample(text, 'controller_runtime_active_workers', c)).toBe(0);

    expect(sample(text, 'workqueue_adds_total', q)).toBe(4); // three keys and one retry
    expect(sample(text, 'workqueue_retries_total', q)).toBe(1);
    expect(sample(text, 'workqueue_depth', q)).toBe(0);
    expect(sample(text, 'workqueue_queue_duration_seconds_count', q)).toBe(4);
    expect(sample(text, 'workqueue_work_duration_seconds_count', q)).toBe(4);
    expect(sample(text, 'workqueue_queue_duration_seconds_bucket', { ...q, le: '1e-8' })).toBe(0);
    expect(sample(text, 'workqueue_queue_duration_seconds_bucket', { ...q, le: '1000' })).toBe(4);
    expect(sample(text, 'workqueue_unfinished_work_seconds', q)).toBe(0);
    expect(sample(text, 'workqueue_longest_running_processor_seconds', q)).toBe(0);
    const workSum = sample(text, 'workqueue_work_duration_seconds_sum', q) ?? -1;
    expect(workSum).toBeGreaterThanOrEqual(0);
    expect(workSum).toBeLessThan(60);

    expect(
      sample(text, 'conductor_manifest_errors_total', {
        file: '/etc/conductor/manifests/broken.yaml',
      }),
    ).toBe(1);
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(text).not.toMatch(/^nodejs_active_(handles|requests|resources)_total/m);

    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    if ((promtool.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      console.warn(
        'promtool not found: skipping `promtool check metrics` (apt-get install prometheus)',
      );
    } else {
      expect({ status: promtool.status, stderr: promtool.stderr }).toEqual({
        status: 0,
        stderr: '',
      });
    }
  });

  it('answers /healthz, /readyz before and after markReady(), and errors for the rest', async () => {
    const { server, base } = await startServer(new ConductorMetrics({ defaultMetrics: false }));
    const healthz = await fetch(`${base}/healthz`);
    expect([healthz.status, await healthz.text()]).toEqual([200, 'ok\n']);
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    await notReady.text();
    server.markReady();
    const ready = await fetch(`${base}/readyz`);
    expect([ready.status, await ready.text()]).toEqual([200, 'ok\n']);
    const head = await fetch(`${base}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    await missing.text();
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    await post.text();
    const query = await fetch(`${base}/healthz?verbose=1`);
    expect(query.status).toBe(200);
    await query.text();
  });

  it('/healthz fails with a line per failing check, and passes again once they do', async () => {
    const { server, base } = await startServer(new ConductorMetrics({ defaultMetrics: false }));
    let why: string | undefined = 'the watch directory /x is gone (ENOENT)';
    server.addHealthCheck('source', () => why);
    server.addHealthCheck('controller-image', () => undefined);
    server.addHealthCheck('broken', () => {
      throw new Error('boom');
    });
    const failing = await fetch(`${base}/healthz`);
    expect([failing.status, await failing.text()]).toEqual([
      500,
      '[-]source failed: the watch directory /x is gone (ENOENT)\n' +
        '[+]controller-image ok\n' +
        '[-]broken failed: the check threw: Error: boom\n' +
        'healthz check failed\n',
    ]);
    why = undefined;
    server.addHealthCheck('broken', () => undefined);
    const ok = await fetch(`${base}/healthz`);
    expect([ok.status, await ok.text()]).toEqual([200, 'ok\n']);
    const verbose = await fetch(`${base}/healthz?verbose`);
    expect(await verbose.text()).toBe(
      '[+]source ok\n[+]controller-image ok\n[+]broken ok\nhealthz check passed\n',
    );
  });

  it('survives malformed requests', async () => {
    const { base, port } = await startServer(new ConductorMetrics({ defaultMetrics: false }));
    for (const garbage of ['\x00\x01\x02 nonsense\r\n\r\n', 'GET http://[bad/ HTTP/1.1\r\n\r\n']) {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => socket.end(garbage));
        let data = '';
        socket.on('data', (d) => (data += d.toString()));
        socket.on('close', () => resolve(data));
        socket.on('error', reject);
      });
      expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    }
    const healthz = await fetch(`${base}/healthz`);
    expect(healthz.status).toBe(200);
    await healthz.text();
  });

  it('stop() closes keep-alive connections and frees the port; start() reports listen errors', async () => {
    const metrics = new ConductorMetrics({ defaultMetrics: false });
    const server = new MetricsServer({ metrics, addr: '127.0.0.1:0' });
    const { port } = await server.start();
    owned.defer(() => server.stop());
    const res = await fetch(`http://127.0.0.1:${port}/healthz`); // keep-alive by default
    await res.text();
    const taken = new MetricsServer({ metrics, addr: `127.0.0.1:${port}` });
    await expect(taken.start()).rejects.toThrow(/listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    await server.stop();
    await server.stop(); // idempotent
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  it('parses --metrics-addr', () => {
    expect(parseAddr('127.0.0.1:9090')).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(parseAddr('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseAddr(':8080')).toEqual({ host: '0.0.0.0', port: 8080 });
    for (const bad of ['127.0.0.1', '127.0.0.1:99999', 'a:b', '::1:80', '']) {
      expect(() => parseAddr(bad)).toThrow(/invalid address/);
    }
  });
});
