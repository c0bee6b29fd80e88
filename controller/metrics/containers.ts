/**
 * Container metrics as cAdvisor exposes them (and the kubelet's /metrics/cadvisor endpoint), so
 * dashboards and alert rules written for Kubernetes work unchanged: the same names, types, units,
 * help texts and labels (`container`, `pod`, `namespace`, `image`, `name`, `id`).
 *
 * Read at scrape time, for the Containers the controller runs: one native read of every
 * container's cgroup and network namespace (RuntimeCore.statsMany), then rendered from a table —
 * as cAdvisor's metrics/prometheus.go, each metric is a row (name, help, type, values over one
 * container's statistics), and adding a metric is adding a row. Nothing is kept between scrapes:
 * a deleted container's series are gone from the next one.
 *
 * Labels: `container` and `pod` are the Container's name (a Conductor Container is what a
 * single-container pod is to the kubelet), `image` its spec.image, `name` the runtime's container
 * id, and `id` its cgroup path with the instant it started (`/conductor/default_web@<RFC 3339>`):
 * cAdvisor's id is the cgroup of one container instance, and a container restarted under its
 * restartPolicy is a new instance whose counters start again from zero, so it must be a new
 * series — a counter never goes backwards within one.
 *
 * One deviation: cAdvisor declares container_memory_failcnt a counter, but a counter's name must
 * end in _total (OpenMetrics, and `promtool check metrics` refuses it otherwise), so it is
 * declared untyped; rate() and increase() work on it the same.
 */
import type { Container } from '../api/types.generated.js';
import type {
  CgroupStats,
  ContainerStats,
  InterfaceStats,
  RuntimeCoreApi,
} from '../../runtime-core/src/index.js';

type MetricType = 'counter' | 'gauge' | 'untyped';

/** What one row is computed from: a running container and what was read of it. */
export interface ContainerSample {
  labels: Readonly<Record<string, string>>;
  stats: ContainerStats;
  /** Seconds since the epoch. */
  startedAt: number;
  now: number;
}

interface Row {
  name: string;
  help: string;
  type: MetricType;
  /** One value, or none when the row does not apply to this container. */
  value?: (s: ContainerSample) => number | undefined;
  /** Per interface (`interface` label), for the network rows. */
  perInterface?: (i: InterfaceStats) => number;
}

const ns = (v: bigint): number => Number(v) / 1e9;
const cg = (f: (c: CgroupStats) => number | undefined) => (s: ContainerSample) => f(s.stats.cgroup);
/** CFS rows exist for containers with a CPU quota, as cAdvisor reports them. */
const withQuota = (f: (c: CgroupStats) => number) =>
  cg((c) => (c.cpuQuotaUs === null ? undefined : f(c)));

/** The table. Help texts are cAdvisor's, word for word. */
export const CONTAINER_METRICS: readonly Row[] = [
  {
    name: 'container_cpu_usage_seconds_total',
    help: 'Cumulative cpu time consumed in seconds.',
    type: 'counter',
    value: cg((c) => ns(c.cpuUsageNs)),
  },
  {
    name: 'container_cpu_user_seconds_total',
    help: 'Cumulative user cpu time consumed in seconds.',
    type: 'counter',
    value: cg((c) => ns(c.cpuUserNs)),
  },
  {
    name: 'container_cpu_system_seconds_total',
    help: 'Cumulative system cpu time consumed in seconds.',
    type: 'counter',
    value: cg((c) => ns(c.cpuSystemNs)),
  },
  {
    name: 'container_cpu_cfs_periods_total',
    help: 'Number of elapsed enforcement period intervals.',
    type: 'counter',
    value: withQuota((c) => c.cpuPeriods),
  },
  {
    name: 'container_cpu_cfs_throttled_periods_total',
    help: 'Number of throttled period intervals.',
    type: 'counter',
    value: withQuota((c) => c.cpuThrottledPeriods),
  },
  {
    name: 'container_cpu_cfs_throttled_seconds_total',
    help: 'Total time duration the container has been throttled.',
    type: 'counter',
    value: withQuota((c) => ns(c.cpuThrottledNs)),
  },
  {
    name: 'container_spec_cpu_quota',
    help: 'CPU quota of the container.',
    type: 'gauge',
    value: cg((c) => c.cpuQuotaUs ?? undefined),
  },
  {
    name: 'container_spec_cpu_period',
    help: 'CPU period of the container.',
    type: 'gauge',
    value: withQuota((c) => c.cpuPeriodUs ?? 0),
  },
  {
    name: 'container_memory_usage_bytes',
    help: 'Current memory usage in bytes, including all memory regardless of when it was accessed',
    type: 'gauge',
    value: cg((c) => c.memoryUsage),
  },
  {
    name: 'container_memory_working_set_bytes',
    help: 'Current working set in bytes.',
    type: 'gauge',
    value: cg((c) => c.memoryWorkingSet),
  },
  {
    name: 'container_memory_rss',
    help: 'Size of RSS in bytes.',
    type: 'gauge',
    value: cg((c) => c.memoryRss),
  },
  {
    name: 'container_memory_cache',
    help: 'Number of bytes of page cache memory.',
    type: 'gauge',
    value: cg((c) => c.memoryCache),
  },
  {
    name: 'container_memory_failcnt',
    help: 'Number of memory usage hits limits',
    type: 'untyped',
    value: cg((c) => c.memoryFailcnt),
  },
  {
    name: 'container_spec_memory_limit_bytes',
    help: 'Memory limit for the container.',
    type: 'gauge',
    value: cg((c) => c.memoryLimit ?? 0),
  },
  {
    name: 'container_oom_events_total',
    help: 'Count of out of memory events observed for the container',
    type: 'counter',
    value: cg((c) => c.oomKills),
  },
  {
    name: 'container_processes',
    help: 'Number of processes running inside the container.',
    type: 'gauge',
    value: cg((c) => c.processes),
  },
  {
    name: 'container_threads',
    help: 'Number of threads running inside the container',
    type: 'gauge',
    value: cg((c) => c.threads),
  },
  {
    name: 'container_threads_max',
    help: 'Maximum number of threads allowed inside the container, infinity if value is zero',
    type: 'gauge',
    value: cg((c) => c.pidsLimit ?? 0),
  },
  {
    name: 'container_start_time_seconds',
    help: 'Start time of the container since unix epoch in seconds.',
    type: 'gauge',
    value: (s) => s.startedAt,
  },
  {
    name: 'container_last_seen',
    help: 'Last time a container was seen by the exporter',
    type: 'gauge',
    value: (s) => s.now,
  },
  {
    name: 'container_network_receive_bytes_total',
    help: 'Cumulative count of bytes received',
    type: 'counter',
    perInterface: (i) => i.rxBytes,
  },
  {
    name: 'container_network_receive_packets_total',
    help: 'Cumulative count of packets received',
    type: 'counter',
    perInterface: (i) => i.rxPackets,
  },
  {
    name: 'container_network_receive_errors_total',
    help: 'Cumulative count of errors encountered while receiving',
    type: 'counter',
    perInterface: (i) => i.rxErrors,
  },
  {
    name: 'container_network_transmit_bytes_total',
    help: 'Cumulative count of bytes transmitted',
    type: 'counter',
    perInterface: (i) => i.txBytes,
  },
  {
    name: 'container_network_transmit_packets_total',
    help: 'Cumulative count of packets transmitted',
    type: 'counter',
    perInterface: (i) => i.txPackets,
  },
  {
    name: 'container_network_transmit_errors_total',
    help: 'Cumulative count of errors encountered while transmitting',
    type: 'counter',
    perInterface: (i) => i.txErrors,
  },
];

/** A label value as the text format wants it: backslash, double quote and newline escaped. */
function escapeLabel(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function labelText(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(',');
}

/** The exposition text of the table for these samples (families with no series left out). */
export function renderContainerMetrics(samples: readonly ContainerSample[]): string {
  const labels = samples.map((s) => labelText(s.labels));
  const out: string[] = [];
  for (const row of CONTAINER_METRICS) {
    const lines: string[] = [];
    samples.forEach((s, i) => {
      if (row.value) {
        const v = row.value(s);
        if (v !== undefined) lines.push(`${row.name}{${labels[i] ?? ''}} ${v}`);
      } else if (row.perInterface) {
        for (const iface of s.stats.interfaces ?? [])
          lines.push(
            `${row.name}{${labels[i] ?? ''},interface="${escapeLabel(iface.name)}"} ${row.perInterface(iface)}`,
          );
      }
    });
    if (lines.length === 0) continue;
    out.push(`# HELP ${row.name} ${row.help}`, `# TYPE ${row.name} ${row.type}`, ...lines);
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

/** A running container's cAdvisor labels (see the file comment). */
export function containerLabels(c: Container, cgroupsPath: string): Record<string, string> {
  const name = c.metadata.name;
  return {
    container: name,
    id: `${cgroupsPath}@${c.status?.startedAt ?? ''}`,
    image: c.spec.image,
    name: c.status?.containerID ?? '',
    namespace: c.metadata.namespace ?? 'default',
    pod: name,
  };
}

/**
 * Reads and renders the metrics of the running Containers `list()` gives (the cache), as one
 * scrape. Containers gone between the list and the read are left out; a read that fails as a
 * whole is `onError`'s, and the scrape says so in container_scrape_error.
 */
export async function scrapeContainers(
  list: () => readonly Container[],
  runtime: Pick<RuntimeCoreApi, 'statsMany'>,
  onError: (err: unknown) => void,
  now: () => Date = () => new Date(),
): Promise<string> {
  const running = list().filter(
    (c) =>
      c.status?.phase === 'Running' &&
      c.status.containerID !== undefined &&
      c.status.pid !== undefined,
  );
  let stats: Map<string, ContainerStats>;
  try {
    stats = await runtime.statsMany(
      running.map((c) => ({
        id: c.status?.containerID ?? '',
        // Network counters of the container's own namespace; a host-network container's
        // interfaces are the node's, not its own.
        ...(c.spec.network !== 'host' ? { network: c.status?.pid } : {}),
      })),
    );
  } catch (err) {
    // The rest of /metrics is still served; the error is a series, as cAdvisor reports it.
    onError(err);
    return scrapeError(1);
  }
  const at = now().getTime() / 1000;
  const samples: ContainerSample[] = [];
  for (const c of running) {
    const s = stats.get(c.status?.containerID ?? '');
    if (!s) continue;
    const started = Date.parse(c.status?.startedAt ?? '');
    samples.push({
      labels: containerLabels(c, s.cgroupsPath),
      stats: s,
      startedAt: Number.isNaN(started) ? 0 : started / 1000,
      now: at,
    });
  }
  return renderContainerMetrics(samples) + scrapeError(0);
}

function scrapeError(v: 0 | 1): string {
  return (
    '# HELP container_scrape_error 1 if there was an error while getting container metrics, 0 otherwise\n' +
    `# TYPE container_scrape_error gauge\ncontainer_scrape_error ${v}\n`
  );
}
