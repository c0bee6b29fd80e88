/**
 * The cAdvisor-compatible container metrics (controller/metrics/containers.ts) and the metrics
 * derived from the cache (controller/metrics/objects.ts), on hand-made statistics and objects.
 * test/integration/observability.test.ts scrapes the real ones with a real Prometheus.
 */
import { describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';

import type { Container, Image, Service } from '../../controller/api/types.generated.js';
import {
  CONTAINER_METRICS,
  renderContainerMetrics,
  scrapeContainers,
  type ContainerSample,
} from '../../controller/metrics/containers.js';
import { registerObjectMetrics } from '../../controller/metrics/objects.js';
import type { CgroupStats, ContainerStats } from '../../runtime-core/src/index.js';

const cgroup = (over: Partial<CgroupStats> = {}): CgroupStats => ({
  cpuUsageNs: 2_500_000_000n,
  cpuUserNs: 2_000_000_000n,
  cpuSystemNs: 500_000_000n,
  cpuPeriods: 40,
  cpuThrottledPeriods: 10,
  cpuThrottledNs: 750_000_000n,
  cpuQuotaUs: null,
  cpuPeriodUs: 100000,
  memoryUsage: 4096000,
  memoryWorkingSet: 3000000,
  memoryRss: 2000000,
  memoryCache: 1000000,
  memoryFailcnt: 3,
  memoryLimit: null,
  pidsCurrent: 2,
  pidsLimit: null,
  processes: 1,
  threads: 2,
  oomKills: 1,
  ...over,
});

function container(name: string, status: Container['status'], network?: 'host'): Container {
  return {
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: 'prod' },
    spec: { image: 'web', ...(network ? { network } : {}) },
    status,
  } as Container;
}

const running = (id: string, pid: number): Container['status'] => ({
  phase: 'Running',
  containerID: id,
  pid,
  startedAt: '2026-12-07T10:00:00.000Z',
  restartCount: 2,
});

/** The lines of `text` for metric `name` (not its HELP/TYPE). */
const series = (text: string, name: string): string[] =>
  text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));

describe('renderContainerMetrics', () => {
  const sample = (over: Partial<CgroupStats> = {}, interfaces = true): ContainerSample => ({
    labels: { container: 'web', id: '/conductor/prod_web@t', namespace: 'prod' },
    stats: {
      cgroupsPath: '/conductor/prod_web',
      cgroup: cgroup(over),
      ...(interfaces
        ? {
            interfaces: [
              {
                name: 'eth0',
                rxBytes: 100,
                rxPackets: 2,
                rxErrors: 0,
                rxDropped: 0,
                txBytes: 50,
                txPackets: 1,
                txErrors: 0,
                txDropped: 0,
              },
            ],
          }
        : {}),
    },
    startedAt: 1796630400,
    now: 1796630460.5,
  });

  it('renders every row with cAdvisor units: seconds from nanoseconds, bytes, counts', () => {
    const text = renderContainerMetrics([sample({ cpuQuotaUs: 50000 })]);
    const value = (name: string): number => Number(series(text, name)[0]?.split(' ').at(-1));
    expect(value('container_cpu_usage_seconds_total')).toBe(2.5);
    expect(value('container_cpu_user_seconds_total')).toBe(2);
    expect(value('container_cpu_system_seconds_total')).toBe(0.5);
    expect(value('container_cpu_cfs_periods_total')).toBe(40);
    expect(value('container_cpu_cfs_throttled_periods_total')).toBe(10);
    expect(value('container_cpu_cfs_throttled_seconds_total')).toBe(0.75);
    expect(value('container_spec_cpu_quota')).toBe(50000);
    expect(value('container_spec_cpu_period')).toBe(100000);
    expect(value('container_memory_working_set_bytes')).toBe(3000000);
    expect(value('container_memory_failcnt')).toBe(3);
    expect(value('container_spec_memory_limit_bytes')).toBe(0); // no limit, as cAdvisor says
    expect(value('container_threads_max')).toBe(0);
    expect(value('container_oom_events_total')).toBe(1);
    expect(value('container_start_time_seconds')).toBe(1796630400);
    expect(value('container_last_seen')).toBe(1796630460.5);
    expect(series(text, 'container_network_receive_bytes_total')).toEqual([
      'container_network_receive_bytes_total{container="web",id="/conductor/prod_web@t",namespace="prod",interface="eth0"} 100',
    ]);
    // Every row is there, each with HELP and TYPE once.
    for (const row of CONTAINER_METRICS) {
      expect(text).toContain(`# HELP ${row.name} ${row.help}\n# TYPE ${row.name} ${row.type}\n`);
      expect(series(text, row.name)).toHaveLength(1);
    }
  });

  it('leaves out the CFS rows without a quota, and the network rows without interfaces', () => {
    const text = renderContainerMetrics([sample({}, false)]);
    for (const name of [
      'container_cpu_cfs_periods_total',
      'container_cpu_cfs_throttled_periods_total',
      'container_cpu_cfs_throttled_seconds_total',
      'container_spec_cpu_quota',
      'container_spec_cpu_period',
      'container_network_receive_bytes_total',
    ])
      expect(text).not.toContain(name);
    expect(series(text, 'container_cpu_usage_seconds_total')).toHaveLength(1);
    expect(renderContainerMetrics([])).toBe('');
  });

  it('escapes label values', () => {
    const s = sample();
    const text = renderContainerMetrics([
      { ...s, labels: { container: 'a"b\\c\nd' }, stats: { ...s.stats, interfaces: [] } },
    ]);
    expect(series(text, 'container_threads')).toEqual([
      'container_threads{container="a\\"b\\\\c\\nd"} 2',
    ]);
  });
});

describe('scrapeContainers', () => {
  const stats = (id: string): ContainerStats => ({
    cgroupsPath: `/conductor/${id}`,
    cgroup: cgroup(),
    interfaces: [],
  });

  it('reads the running Containers, with the network of those not on the host network', async () => {
    const asked: unknown[] = [];
    const runtime = {
      statsMany(targets: readonly { id: string; network?: number }[]) {
        asked.push(...targets);
        // prod_gone vanished between the list and the read.
        return Promise.resolve(
          new Map(targets.filter((t) => t.id !== 'prod_gone').map((t) => [t.id, stats(t.id)])),
        );
      },
    };
    const text = await scrapeContainers(
      () => [
        container('web', running('prod_web', 10)),
        container('hostnet', running('prod_hostnet', 11), 'host'),
        container('gone', running('prod_gone', 12)),
        container('waiting', { phase: 'Pending' }),
        container('done', { phase: 'Succeeded', containerID: 'prod_done' }),
      ],
      runtime,
      () => undefined,
      () => new Date(1796630460000),
    );
    expect(asked).toEqual([
      { id: 'prod_web', network: 10 },
      { id: 'prod_hostnet' },
      { id: 'prod_gone', network: 12 },
    ]);
    expect(series(text, 'container_threads')).toEqual([
      'container_threads{container="web",id="/conductor/prod_web@2026-12-07T10:00:00.000Z",image="web",name="prod_web",namespace="prod",pod="web"} 2',
      'container_threads{container="hostnet",id="/conductor/prod_hostnet@2026-12-07T10:00:00.000Z",image="web",name="prod_hostnet",namespace="prod",pod="hostnet"} 2',
    ]);
    expect(series(text, 'container_start_time_seconds')[0]).toMatch(/ 1796637600$/);
    expect(series(text, 'container_scrape_error')).toEqual(['container_scrape_error 0']);
  });

  it('says so in container_scrape_error when the read fails, and reports the error', async () => {
    const errors: unknown[] = [];
    const text = await scrapeContainers(
      () => [container('web', running('prod_web', 10))],
      { statsMany: () => Promise.reject(new Error('addon gone')) },
      (err) => errors.push(err),
    );
    expect(series(text, 'container_scrape_error')).toEqual(['container_scrape_error 1']);
    expect(series(text, 'container_threads')).toEqual([]);
    expect(errors).toHaveLength(1);
  });
});

describe('registerObjectMetrics', () => {
  it('counts Containers and Images by phase, restarts and endpoints from the cache at each scrape', async () => {
    const registry = new Registry();
    let containers: Container[] = [
      container('a', running('prod_a', 1)),
      container('b', { phase: 'Pending', restartCount: 0 }),
    ];
    const images = [{ metadata: { name: 'web', namespace: 'prod' }, status: { phase: 'Ready' } }];
    const services = [
      {
        metadata: { name: 'web', namespace: 'prod' },
        status: {
          endpoints: [
            { ip: '10.0.0.1', ready: true },
            { ip: '10.0.0.2', ready: false },
            { ip: '10.0.0.3', ready: true },
          ],
        },
      },
    ];
    registerObjectMetrics(registry, {
      containers: () => containers,
      images: () => images as Image[],
      services: () => services as Service[],
    });
    let text = await registry.metrics();
    expect(series(text, 'conductor_containers')).toEqual([
      'conductor_containers{phase="Pending"} 1',
      'conductor_containers{phase="Running"} 1',
      'conductor_containers{phase="Succeeded"} 0',
      'conductor_containers{phase="Failed"} 0',
      'conductor_containers{phase="Unknown"} 0',
    ]);
    expect(series(text, 'conductor_images')).toContain('conductor_images{phase="Ready"} 1');
    expect(series(text, 'kube_pod_container_status_restarts_total')).toEqual([
      'kube_pod_container_status_restarts_total{namespace="prod",pod="a",container="a"} 2',
      'kube_pod_container_status_restarts_total{namespace="prod",pod="b",container="b"} 0',
    ]);
    expect(series(text, 'conductor_service_endpoints')).toEqual([
      'conductor_service_endpoints{namespace="prod",service="web",ready="true"} 2',
      'conductor_service_endpoints{namespace="prod",service="web",ready="false"} 1',
    ]);
    // A deleted Container's series are gone from the next scrape.
    containers = containers.filter((c) => c.metadata.name !== 'a');
    text = await registry.metrics();
    expect(series(text, 'kube_pod_container_status_restarts_total')).toEqual([
      'kube_pod_container_status_restarts_total{namespace="prod",pod="b",container="b"} 0',
    ]);
  });
});
