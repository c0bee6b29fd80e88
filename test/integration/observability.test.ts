/**
 * Issue 12 end to end: a real Prometheus scrapes a real controller (every second) running real
 * containers, and what operators ask of it answers through PromQL — a CPU-burning container
 * shows a usage rate near its 0.5-CPU limit and throttled periods; a memory-hungry one its
 * working set and then its OOM kill; a deleted container's series go; the scrape passes
 * `promtool check metrics`; the alert for the OOM kill fires; and every panel of
 * manifests/observability/grafana-dashboard.json returns data. Needs root.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Container } from '../../controller/api/types.generated.js';
import { ControllerHarness, REPO_ROOT, containerManifest } from '../fixtures/controller.js';
import {
  assertNoLeaks,
  busyboxImage,
  hostSnapshot,
  promtoolCheckMetrics,
  saveArchive,
  startPrometheus,
  uniqueId,
  type HostSnapshot,
  type Prometheus,
  type PromSample,
} from '../fixtures/index.js';

const NS = uniqueId('obs');
const DASHBOARD = join(REPO_ROOT, 'manifests/observability/grafana-dashboard.json');
const ALERTS = join(REPO_ROOT, 'manifests/observability/alerts.yaml');

let before: HostSnapshot;
let h: ControllerHarness;
let prom: Prometheus;
let metricsUrl: string;

/** `{namespace="NS",container="NAME"}`: one Container's series. */
const of = (name: string): string => `{namespace="${NS}",container="${name}"}`;
const value = (s: PromSample[]): number => s[0]?.value ?? NaN;

beforeAll(async () => {
  before = hostSnapshot();
  h = await ControllerHarness.create(NS);
  // Imported from an OCI archive next to the manifest: a pull, for the pull histogram.
  await saveArchive(await busyboxImage(), 'oci-archive', join(h.watchDir, 'busybox.tar'));
  const ctl = await h.start();
  metricsUrl = `http://127.0.0.1:${ctl.metricsAddress.port}/metrics`;
  await h.write(
    'image.yaml',
    `apiVersion: conductor.dev/v1alpha1
kind: Image
metadata: {name: busybox, namespace: ${NS}}
spec: {from: "oci-archive:busybox.tar"}
`,
  );
  const containers = [
    // One core's worth of work under a 0.5-CPU quota: throttled in every period.
    containerManifest(NS, 'burn', {
      command: ['/bin/sh', '-c', 'while :; do :; done'],
      resources: { limits: { cpu: '500m', memory: '32Mi', pids: 16 } },
    }),
    // Holds ~8 MB, then every 2 s a child asks for 64 MB under a 32 MiB limit and is OOM-killed
    // (the largest process in the cgroup), while the container itself lives on.
    containerManifest(NS, 'hog', {
      command: [
        '/bin/sh',
        '-c',
        'keep=$(head -c 8000000 /dev/zero | tr "\\0" a); ' +
          'while :; do sleep 2; (grow=$(head -c 64000000 /dev/zero | tr "\\0" b)); done',
      ],
      resources: { limits: { memory: '32Mi' } },
    }),
    containerManifest(NS, 'idle', { command: ['/bin/sleep', '3600'] }, { tier: 'web' }),
    // Endpoints for the Service panels: idle (ready: it has no readiness probe).
    JSON.stringify({
      apiVersion: 'conductor.dev/v1alpha1',
      kind: 'Service',
      metadata: { name: 'web', namespace: NS },
      spec: { selector: { tier: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    }),
  ];
  await h.write('containers.yaml', containers.join('\n---\n'));
  for (const name of ['burn', 'hog', 'idle'])
    await h.waitFor<Container>('Container', name, (o) => o?.status?.phase === 'Running', 60_000);
  prom = await startPrometheus({
    targets: [`127.0.0.1:${ctl.metricsAddress.port}`],
    ruleFiles: [ALERTS],
    prefix: NS,
  });
});

afterAll(async () => {
  await prom?.stop();
  await h?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

describe('a real Prometheus scraping a controller with containers', () => {
  it('sees a CPU-burning container use about its 0.5-CPU limit, and throttled', async () => {
    const rate = await prom.waitFor(`rate(container_cpu_usage_seconds_total${of('burn')}[5s])`, {
      until: (s) => value(s) > 0.3,
      timeoutMs: 30_000,
    });
    // The quota caps it at 0.5; the machine may give it less when busy, never much more.
    expect(value(rate)).toBeLessThan(0.6);
    const throttled = await prom.waitFor(
      `rate(container_cpu_cfs_throttled_periods_total${of('burn')}[5s])`,
      { until: (s) => value(s) > 0 },
    );
    expect(value(throttled)).toBeGreaterThan(0);
    expect(value(await prom.queryVector(`container_spec_cpu_quota${of('burn')}`))).toBe(50000);
    expect(value(await prom.queryVector(`container_spec_cpu_period${of('burn')}`))).toBe(100000);
  });

  it('sees a memory-hungry container hold its working set, then get OOM-killed', async () => {
    const ws = await prom.waitFor(`container_memory_working_set_bytes${of('hog')}`, {
      until: (s) => value(s) > 4_000_000,
      timeoutMs: 30_000,
    });
    expect(value(ws)).toBeLessThanOrEqual(32 * 1024 * 1024);
    expect(value(await prom.queryVector(`container_spec_memory_limit_bytes${of('hog')}`))).toBe(
      32 * 1024 * 1024,
    );
    const ooms = await prom.waitFor(`container_oom_events_total${of('hog')}`, {
      until: (s) => value(s) > 0,
      timeoutMs: 30_000,
    });
    expect(ooms[0]?.metric).toMatchObject({
      namespace: NS,
      container: 'hog',
      pod: 'hog',
      image: 'busybox',
      name: `${NS}_hog`,
      id: expect.stringMatching(new RegExp(`/${NS}_hog@\\d{4}-`)),
      job: 'conductor',
    });
    // The alert written for it fires (for: 0m), naming the container.
    await prom.waitFor(`ALERTS{alertname="ConductorContainerOOMKilled",container="hog"}`, {
      timeoutMs: 30_000,
    });
  });

  it('passes promtool check metrics on a real scrape', async () => {
    const text = await (await fetch(metricsUrl)).text();
    expect(text).toContain('container_network_receive_bytes_total{');
    const lint = await promtoolCheckMetrics(text);
    expect({ rc: lint.rc, output: lint.output }).toEqual({ rc: 0, output: '' });
  });

  it('returns data for every panel of the dashboard', async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      panels: { title?: string; panels?: unknown[]; targets?: { expr: string }[] }[];
    };
    type Panel = (typeof dashboard.panels)[number];
    const exprs: [string, string][] = [];
    const walk = (panels: Panel[]): void => {
      for (const p of panels) {
        if (p.panels) walk(p.panels as Panel[]);
        for (const t of p.targets ?? []) exprs.push([p.title ?? '', t.expr]);
      }
    };
    walk(dashboard.panels);
    expect(exprs.length).toBeGreaterThan(20);
    // As Grafana would: the variables at "All", the intervals long enough for a few scrapes.
    const values: Record<string, string> = {
      job: 'conductor',
      instance: '.*',
      namespace: NS,
      container: '.*',
      __rate_interval: '10s',
      __interval: '5s',
      __range: '5m',
    };
    const empty: string[] = [];
    for (const [title, expr] of exprs) {
      const query = expr.replace(
        /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g,
        (whole, b?: string, n?: string) => {
          const v = values[b ?? n ?? ''];
          if (v === undefined) throw new Error(`${title}: no value for ${whole}`);
          return v;
        },
      );
      const samples = await prom
        .waitFor(query, { timeoutMs: 20_000 })
        .catch(() => [] as PromSample[]);
      if (samples.length === 0) empty.push(`${title}: ${query}`);
    }
    expect(empty).toEqual([]);
  });

  it("drops a deleted container's series from the next scrape", async () => {
    await prom.waitFor(`container_last_seen${of('idle')}`);
    await h.write(
      'containers.yaml',
      readFileSync(join(h.watchDir, 'containers.yaml'), 'utf8')
        .split('\n---\n')
        .filter((doc) => !doc.includes('"name":"idle"'))
        .join('\n---\n'),
    );
    await h.waitFor('Container', 'idle', (o) => o === undefined, 30_000);
    // Gone from the scrape: Prometheus marks the series stale and an instant query finds none.
    await prom.waitFor(`container_last_seen${of('idle')}`, {
      until: (s) => s.length === 0,
      timeoutMs: 20_000,
    });
    const text = await (await fetch(metricsUrl)).text();
    expect(text).not.toContain(`container="idle"`);
    expect(text).toContain(`container="burn"`);
  });
});
