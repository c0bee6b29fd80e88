/**
 * manifests/observability/ against the real tools: prometheus.yml and alerts.yaml through
 * promtool, the ServiceMonitor against the Service it scrapes, and the Grafana dashboard and the
 * alert rules against a real Prometheus (test/fixtures/prometheus.ts) scraping stand-in targets:
 * a node in trouble, a healthy node and a node that is down. Every panel query (its template
 * variables substituted) must give a non-empty, numeric result; every alert must load, fire on the
 * node in trouble — its annotations expanded — and stay quiet on the healthy one. Every metric
 * name the pictures use must be one Conductor exports (METRICS, the one list of them). Needs no
 * root; traffic only on 127.0.0.1.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { parse as parseYaml, parseAllDocuments } from 'yaml';

import { ConductorMetrics } from '../../controller/metrics/index.js';
import { REPO_ROOT } from '../fixtures/controller.js';
import {
  assertNoLeaks,
  freePort,
  hostSnapshot,
  promtoolCheckConfig,
  promtoolCheckMetrics,
  promtoolCheckRules,
  serveExposition,
  startPrometheus,
  uniqueId,
  type AlertingRule,
  type ExpositionServer,
  type HostSnapshot,
  type Prometheus,
} from '../fixtures/index.js';

const DIR = join(REPO_ROOT, 'manifests', 'observability');
const PROMETHEUS_YML = join(DIR, 'prometheus.yml');
const ALERTS = join(DIR, 'alerts.yaml');
const DASHBOARD = join(DIR, 'grafana-dashboard.json');
const SERVICE_MONITOR = join(DIR, 'servicemonitor.yaml');
const DEPLOY = join(REPO_ROOT, 'manifests', 'deploy');

// ---------------------------------------------------------------------------------------------
// The metrics the pictures may use: the one list. A name here that Conductor does not export is
// a picture that stays empty.

type MetricType = 'counter' | 'gauge' | 'histogram' | 'untyped';

/** Exported today by controller/metrics/registry.ts (checked against a real scrape below). */
const CONTROLLER_METRICS: Record<string, MetricType> = {
  controller_runtime_reconcile_total: 'counter',
  controller_runtime_reconcile_errors_total: 'counter',
  controller_runtime_terminal_reconcile_errors_total: 'counter',
  controller_runtime_reconcile_time_seconds: 'histogram',
  controller_runtime_active_workers: 'gauge',
  controller_runtime_max_concurrent_reconciles: 'gauge',
  workqueue_depth: 'gauge',
  workqueue_adds_total: 'counter',
  workqueue_queue_duration_seconds: 'histogram',
  workqueue_work_duration_seconds: 'histogram',
  workqueue_unfinished_work_seconds: 'gauge',
  workqueue_longest_running_processor_seconds: 'gauge',
  workqueue_retries_total: 'counter',
  conductor_manifest_errors_total: 'counter',
  process_cpu_seconds_total: 'counter',
  process_resident_memory_bytes: 'gauge',
  process_start_time_seconds: 'gauge',
  nodejs_heap_size_used_bytes: 'gauge',
  nodejs_eventloop_lag_p99_seconds: 'gauge',
};

/**
 * Issue 12's collector (names final): cAdvisor's container metrics, per running container, and
 * Conductor's own. container_memory_failcnt is untyped: a counter must end in _total.
 */
const ISSUE_12_METRICS: Record<string, MetricType> = {
  container_cpu_usage_seconds_total: 'counter',
  container_cpu_user_seconds_total: 'counter',
  container_cpu_system_seconds_total: 'counter',
  container_memory_failcnt: 'untyped',
  container_oom_events_total: 'counter',
  container_cpu_cfs_periods_total: 'counter',
  container_cpu_cfs_throttled_periods_total: 'counter',
  container_cpu_cfs_throttled_seconds_total: 'counter',
  container_memory_usage_bytes: 'gauge',
  container_memory_working_set_bytes: 'gauge',
  container_memory_rss: 'gauge',
  container_memory_cache: 'gauge',
  container_spec_memory_limit_bytes: 'gauge',
  container_processes: 'gauge',
  container_threads: 'gauge',
  container_threads_max: 'gauge',
  container_start_time_seconds: 'gauge',
  container_last_seen: 'gauge',
  container_spec_cpu_quota: 'gauge',
  container_spec_cpu_period: 'gauge',
  container_network_receive_bytes_total: 'counter',
  container_network_receive_packets_total: 'counter',
  container_network_transmit_bytes_total: 'counter',
  container_network_transmit_packets_total: 'counter',
  container_network_receive_errors_total: 'counter',
  container_network_transmit_errors_total: 'counter',
  conductor_containers: 'gauge',
  kube_pod_container_status_restarts_total: 'counter',
  conductor_image_build_duration_seconds: 'histogram',
  conductor_image_pull_duration_seconds: 'histogram',
  conductor_image_layer_cache_total: 'counter',
  conductor_service_endpoints: 'gauge',
  conductor_events_total: 'counter',
};

/** Made by Prometheus for every target. */
const SYNTHETIC_METRICS: Record<string, MetricType> = { up: 'gauge' };

const METRICS: Record<string, MetricType> = {
  ...CONTROLLER_METRICS,
  ...ISSUE_12_METRICS,
  ...SYNTHETIC_METRICS,
};

/** The series names a query may select: a histogram's _bucket, _sum and _count. */
const SERIES_NAMES = new Set(
  Object.entries(METRICS).flatMap(([name, type]) =>
    type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name],
  ),
);

// ---------------------------------------------------------------------------------------------
// PromQL: the metric names an expression selects.

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
]);
const KEYWORDS = new Set(['bool', 'and', 'or', 'unless', 'offset', 'atan2', 'inf', 'nan']);
/** Followed by a parenthesised list of label names. */
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/**
 * The metric names in a PromQL expression: identifiers that are not functions, aggregations,
 * keywords, label names (in `{}` or in a by/on/... list), strings or durations.
 */
function metricNames(expr: string): string[] {
  const names = new Set<string>();
  let braces = 0;
  let i = 0;
  const skipSpace = (j: number): number => {
    while (j < expr.length && /\s/.test(expr[j] ?? '')) j++;
    return j;
  };
  while (i < expr.length) {
    const c = expr[i] ?? '';
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < expr.length && expr[j] !== c) j += expr[j] === '\\' && c !== '`' ? 2 : 1;
      i = j + 1;
    } else if (c === '{') {
      braces++;
      i++;
    } else if (c === '}') {
      braces--;
      i++;
    } else if (c === '[') {
      i = expr.indexOf(']', i) + 1 || expr.length; // a range or subquery: durations only
    } else if (/[0-9.]/.test(c)) {
      i += /^[0-9.]+(?:[eE][+-]?[0-9]+)?[a-z]*/.exec(expr.slice(i))?.[0].length ?? 1;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const word = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))?.[0] ?? c;
      i += word.length;
      if (braces > 0) continue; // a label name
      const next = skipSpace(i);
      if (LABEL_LISTS.has(word)) {
        if (expr[next] === '(') i = expr.indexOf(')', next) + 1 || expr.length;
        continue;
      }
      if (expr[next] === '(' || AGGREGATIONS.has(word) || KEYWORDS.has(word)) continue;
      names.add(word);
    } else {
      i++;
    }
  }
  return [...names].sort();
}

// ---------------------------------------------------------------------------------------------
// The manifests, as the test reads them.

interface DatasourceRef {
  type?: string;
  uid?: string;
}

interface PanelTarget {
  refId: string;
  expr?: string;
  datasource?: DatasourceRef;
  instant?: boolean;
  range?: boolean;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: DatasourceRef;
  targets?: PanelTarget[];
  /** A collapsed row's panels. */
  panels?: Panel[];
}

interface Variable {
  name: string;
  type: string;
  query?: string | { query: string };
  datasource?: DatasourceRef;
  includeAll?: boolean;
  multi?: boolean;
  allValue?: string;
}

interface Dashboard {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

interface RuleDef {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleFile {
  groups: { name: string; interval?: string; rules: RuleDef[] }[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const ruleFile = parseYaml(readFileSync(ALERTS, 'utf8')) as RuleFile;
const alertRules = ruleFile.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);

/** Every panel, those in collapsed rows too; rows themselves only hold panels. */
const allPanels: Panel[] = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const graphPanels = allPanels.filter((p) => p.type !== 'row');
const panelQueries = graphPanels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ panel: p, target: t, expr: t.expr ?? '' })),
);

function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
}

/** `label_values(SELECTOR, LABEL)`, Grafana's Prometheus variable query. */
function labelValues(query: string): { selector: string; label: string } | undefined {
  const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(query.trim());
  return m?.[1] && m[2] ? { selector: m[1], label: m[2] } : undefined;
}

/**
 * Template variables as Grafana substitutes them: the query variables by a regex matching all
 * (their allValue; the job by its value), the built-in intervals by typical values.
 */
const VARIABLE_VALUES: Record<string, string> = {
  job: 'conductor',
  instance: '.*',
  namespace: '.*',
  container: '.*',
  __rate_interval: '15s',
  __interval: '5s',
  __range: '1m',
};

function substitute(expr: string): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
    const value = VARIABLE_VALUES[braced ?? bare ?? ''];
    if (value === undefined) throw new Error(`no value for ${whole} in ${expr}`);
    return value;
  });
}

function seconds(duration: string): number {
  const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
  const m = /^(\d+)([smhd])$/.exec(duration);
  if (!m?.[1] || !m[2]) throw new Error(`duration ${duration}`);
  return Number(m[1]) * (units[m[2]] ?? NaN);
}

// ---------------------------------------------------------------------------------------------
// Stand-in targets: the exposition of one node, every family the pictures use, with the labels
// Conductor gives them. Counters advance with time (rates are not zero); `trouble` makes every
// alert's condition hold.

interface SeriesValue {
  labels: Record<string, string>;
  value: number;
  /** _bucket, _sum or _count of a histogram. */
  suffix?: string;
}

interface Family {
  name: string;
  type: MetricType;
  help: string;
  series: SeriesValue[];
}

const MiB = 1024 * 1024;
const STARTED = new Date(Date.now() - 3600_000);

interface StandInContainer {
  namespace: string;
  name: string;
  image: string;
  cpuQuotaUs?: number;
  memoryLimit: number;
  pidsLimit: number;
  /** Bridge network: has an eth0. */
  bridge: boolean;
}

const CONTAINERS: StandInContainer[] = [
  {
    namespace: 'default',
    name: 'web',
    image: 'web',
    cpuQuotaUs: 50_000,
    memoryLimit: 64 * MiB,
    pidsLimit: 512,
    bridge: true,
  },
  {
    namespace: 'default',
    name: 'counter',
    image: 'counter',
    memoryLimit: 0,
    pidsLimit: 0,
    bridge: true,
  },
  {
    namespace: 'batch',
    name: 'report',
    image: 'busybox',
    memoryLimit: 0,
    pidsLimit: 0,
    bridge: false,
  },
];

function cadvisorLabels(c: StandInContainer): Record<string, string> {
  const id = `${c.namespace}_${c.name}`;
  return {
    container: c.name,
    pod: c.name,
    namespace: c.namespace,
    image: c.image,
    name: id,
    id: `/conductor/${id}@${STARTED.toISOString()}`,
  };
}

function histogram(
  labels: Record<string, string>,
  buckets: number[],
  count: number,
  /** The share of observations at or below a bound. */
  share: (le: number) => number,
  mean: number,
): SeriesValue[] {
  return [
    ...buckets.map((le) => ({
      labels: { ...labels, le: String(le) },
      value: Math.floor(count * Math.min(1, share(le))),
      suffix: '_bucket',
    })),
    { labels: { ...labels, le: '+Inf' }, value: Math.floor(count), suffix: '_bucket' },
    { labels, value: Math.floor(count) * mean, suffix: '_sum' },
    { labels, value: Math.floor(count), suffix: '_count' },
  ];
}

/** Observations spread log-uniformly between lo and hi: a share per bucket bound. */
const logSpread =
  (lo: number, hi: number) =>
  (le: number): number =>
    le <= lo ? 0 : le >= hi ? 1 : Math.log(le / lo) / Math.log(hi / lo);

function nodeFamilies(trouble: boolean, t: number): Family[] {
  /** A counter at `perSecond` since the stand-in started. */
  const grow = (perSecond: number, base = 0): number => base + perSecond * t;
  const bad = (inTrouble: number, healthy: number): number => (trouble ? inTrouble : healthy);
  const families: Family[] = [];
  const family = (name: string, type: MetricType, help: string, series: SeriesValue[]): void => {
    families.push({ name, type, help, series });
  };
  const perContainer = (
    name: string,
    type: MetricType,
    help: string,
    value: (c: StandInContainer, i: number) => number | undefined,
  ): void => {
    const series: SeriesValue[] = [];
    CONTAINERS.forEach((c, i) => {
      const v = value(c, i);
      if (v !== undefined) series.push({ labels: cadvisorLabels(c), value: v });
    });
    family(name, type, help, series);
  };
  const perInterface = (name: string, help: string, perSecond: number): void =>
    family(
      name,
      'counter',
      help,
      CONTAINERS.filter((c) => c.bridge).map((c, i) => ({
        labels: { ...cadvisorLabels(c), interface: 'eth0' },
        value: Math.floor(grow(perSecond * (i + 1), 1000)),
      })),
    );
  const web = (c: StandInContainer): boolean => c.name === 'web';

  // cAdvisor's, per running container.
  perContainer(
    'container_cpu_user_seconds_total',
    'counter',
    'Cumulative user cpu time consumed in seconds.',
    (_, i) => grow(0.2 + 0.1 * i, 30),
  );
  perContainer(
    'container_cpu_system_seconds_total',
    'counter',
    'Cumulative system cpu time consumed in seconds.',
    (_, i) => grow(0.05 + 0.01 * i, 5),
  );
  perContainer(
    'container_cpu_usage_seconds_total',
    'counter',
    'Cumulative cpu time consumed in seconds.',
    (_, i) => grow(0.25 + 0.11 * i, 35),
  );
  const periods = (c: StandInContainer): number | undefined =>
    c.cpuQuotaUs ? Math.floor(grow(10, 36_000)) : undefined;
  perContainer(
    'container_cpu_cfs_periods_total',
    'counter',
    'Number of elapsed enforcement period intervals.',
    periods,
  );
  perContainer(
    'container_cpu_cfs_throttled_periods_total',
    'counter',
    'Number of throttled period intervals.',
    (c) => (c.cpuQuotaUs ? Math.floor(grow(bad(6, 0.5), 100)) : undefined),
  );
  perContainer(
    'container_cpu_cfs_throttled_seconds_total',
    'counter',
    'Total time duration the container has been throttled.',
    (c) => (c.cpuQuotaUs ? grow(bad(0.3, 0.01), 2) : undefined),
  );
  perContainer(
    'container_spec_cpu_quota',
    'gauge',
    'CPU quota of the container.',
    (c) => c.cpuQuotaUs,
  );
  perContainer('container_spec_cpu_period', 'gauge', 'CPU period of the container.', (c) =>
    c.cpuQuotaUs ? 100_000 : undefined,
  );
  const workingSet = (c: StandInContainer): number =>
    web(c) ? bad(61, 20) * MiB : c.name === 'counter' ? 3 * MiB : 12 * MiB;
  perContainer(
    'container_memory_working_set_bytes',
    'gauge',
    'Current working set in bytes.',
    workingSet,
  );
  perContainer(
    'container_memory_usage_bytes',
    'gauge',
    'Current memory usage in bytes, including all memory regardless of when it was accessed',
    (c) => workingSet(c) + 2 * MiB,
  );
  perContainer(
    'container_memory_rss',
    'gauge',
    'Size of RSS in bytes.',
    (c) => workingSet(c) - MiB,
  );
  perContainer(
    'container_memory_cache',
    'gauge',
    'Number of bytes of page cache memory.',
    () => 3 * MiB,
  );
  perContainer('container_memory_failcnt', 'untyped', 'Number of memory usage hits limits', (c) =>
    web(c) ? Math.floor(grow(bad(2, 0))) : 0,
  );
  perContainer(
    'container_spec_memory_limit_bytes',
    'gauge',
    'Memory limit for the container.',
    (c) => c.memoryLimit,
  );
  perContainer(
    'container_oom_events_total',
    'counter',
    'Count of out of memory events observed for the container',
    (c) => (web(c) ? Math.floor(grow(bad(0.3, 0))) : 0),
  );
  perContainer(
    'container_processes',
    'gauge',
    'Number of processes running inside the container.',
    (_, i) => 1 + i,
  );
  perContainer(
    'container_threads',
    'gauge',
    'Number of threads running inside the container',
    (_, i) => 4 + i,
  );
  perContainer(
    'container_threads_max',
    'gauge',
    'Maximum number of threads allowed inside the container, infinity if value is zero',
    (c) => c.pidsLimit,
  );
  perContainer(
    'container_start_time_seconds',
    'gauge',
    'Start time of the container since unix epoch in seconds.',
    () => STARTED.getTime() / 1000,
  );
  perContainer(
    'container_last_seen',
    'gauge',
    'Last time a container was seen by the exporter',
    () => Math.floor(Date.now() / 1000),
  );
  perInterface('container_network_receive_bytes_total', 'Cumulative count of bytes received', 2000);
  perInterface(
    'container_network_receive_packets_total',
    'Cumulative count of packets received',
    20,
  );
  perInterface(
    'container_network_receive_errors_total',
    'Cumulative count of errors encountered while receiving',
    0.1,
  );
  perInterface(
    'container_network_transmit_bytes_total',
    'Cumulative count of bytes transmitted',
    5000,
  );
  perInterface(
    'container_network_transmit_packets_total',
    'Cumulative count of packets transmitted',
    25,
  );
  perInterface(
    'container_network_transmit_errors_total',
    'Cumulative count of errors encountered while transmitting',
    0.1,
  );

  // Conductor's own.
  family('conductor_containers', 'gauge', 'Containers by phase.', [
    { labels: { phase: 'Pending' }, value: 0 },
    { labels: { phase: 'Running' }, value: CONTAINERS.length },
    { labels: { phase: 'Succeeded' }, value: 1 },
    { labels: { phase: 'Failed' }, value: bad(1, 0) },
  ]);
  family(
    'kube_pod_container_status_restarts_total',
    'counter',
    'The number of container restarts per container.',
    CONTAINERS.map((c) => ({
      labels: { namespace: c.namespace, pod: c.name, container: c.name },
      value: web(c) ? Math.floor(grow(bad(0.5, 0), 2)) : 0,
    })),
  );
  const buildBuckets = [1, 5, 15, 30, 60, 120, 300, 600, 1800];
  family(
    'conductor_image_build_duration_seconds',
    'histogram',
    'Image builds, seconds.',
    histogram({}, buildBuckets, grow(0.5, 10), logSpread(2, 200), 40),
  );
  family(
    'conductor_image_pull_duration_seconds',
    'histogram',
    'Image pulls, seconds.',
    histogram({}, buildBuckets, grow(0.3, 5), logSpread(1, 60), 10),
  );
  family(
    'conductor_image_layer_cache_total',
    'counter',
    'Build steps found in the layer cache or not.',
    [
      { labels: { result: 'hit' }, value: Math.floor(grow(2, 50)) },
      { labels: { result: 'miss' }, value: Math.floor(grow(0.5, 10)) },
    ],
  );
  family('conductor_service_endpoints', 'gauge', 'Endpoints of each Service, ready or not.', [
    { labels: { namespace: 'default', service: 'web', ready: 'true' }, value: bad(0, 1) },
    { labels: { namespace: 'default', service: 'web', ready: 'false' }, value: bad(1, 0) },
    { labels: { namespace: 'default', service: 'counter', ready: 'true' }, value: 1 },
    { labels: { namespace: 'default', service: 'counter', ready: 'false' }, value: 0 },
  ]);
  family('conductor_events_total', 'counter', 'Events recorded.', [
    {
      labels: { kind: 'Container', type: 'Normal', reason: 'Started' },
      value: Math.floor(grow(bad(0.5, 0.1), 3)),
    },
    {
      labels: { kind: 'Container', type: 'Warning', reason: 'Unhealthy' },
      value: Math.floor(grow(bad(1, 0), 1)),
    },
    { labels: { kind: 'Image', type: 'Normal', reason: 'Built' }, value: Math.floor(grow(0.5, 2)) },
  ]);

  // controller-runtime's, as controller/metrics/registry.ts writes them.
  const controllers = ['image', 'container', 'service'];
  const errorsPerSecond = (c: string): number => (c === 'container' ? bad(0.5, 0) : 0);
  family(
    'controller_runtime_reconcile_total',
    'counter',
    'Total number of reconciliations per controller',
    controllers.flatMap((controller) =>
      (['success', 'error', 'requeue', 'requeue_after'] as const).map((result) => ({
        labels: { controller, result },
        value: Math.floor(
          grow(
            result === 'success' ? 3 : result === 'error' ? errorsPerSecond(controller) : 0.2,
            10,
          ),
        ),
      })),
    ),
  );
  family(
    'controller_runtime_reconcile_errors_total',
    'counter',
    'Total number of reconciliation errors per controller',
    controllers.map((controller) => ({
      labels: { controller },
      value: Math.floor(grow(errorsPerSecond(controller), 10)),
    })),
  );
  family(
    'controller_runtime_reconcile_time_seconds',
    'histogram',
    'Length of time per reconciliation per controller',
    controllers.flatMap((controller) =>
      histogram(
        { controller },
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
        grow(3.4, 30),
        logSpread(0.002, controller === 'image' ? 30 : 0.5),
        0.05,
      ),
    ),
  );
  family(
    'controller_runtime_active_workers',
    'gauge',
    'Number of currently used workers per controller',
    controllers.map((controller) => ({
      labels: { controller },
      value: controller === 'image' ? bad(1, 0) : 0,
    })),
  );
  const queue = (name: string): Record<string, string> => ({ name, controller: name });
  const stuck = (name: string): number => (name === 'image' ? bad(900 + t, 0) : 0);
  const queueBuckets = [1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000];
  family(
    'workqueue_depth',
    'gauge',
    'Current depth of workqueue',
    controllers.map((n) => ({ labels: queue(n), value: n === 'image' ? bad(4, 0) : 1 })),
  );
  family(
    'workqueue_adds_total',
    'counter',
    'Total number of adds handled by workqueue',
    controllers.map((n) => ({ labels: queue(n), value: Math.floor(grow(3, 20)) })),
  );
  family(
    'workqueue_retries_total',
    'counter',
    'Total number of retries handled by workqueue',
    controllers.map((n) => ({ labels: queue(n), value: Math.floor(grow(errorsPerSecond(n), 1)) })),
  );
  family(
    'workqueue_queue_duration_seconds',
    'histogram',
    'How long in seconds an item stays in workqueue before being requested',
    controllers.flatMap((n) =>
      histogram(queue(n), queueBuckets, grow(3, 20), logSpread(1e-5, 0.1), 0.002),
    ),
  );
  family(
    'workqueue_work_duration_seconds',
    'histogram',
    'How long in seconds processing an item from workqueue takes.',
    controllers.flatMap((n) =>
      histogram(queue(n), queueBuckets, grow(3, 20), logSpread(1e-3, 1), 0.05),
    ),
  );
  family(
    'workqueue_unfinished_work_seconds',
    'gauge',
    "How many seconds of work has been done that is in progress and hasn't been observed by work_duration.",
    controllers.map((n) => ({ labels: queue(n), value: stuck(n) })),
  );
  family(
    'workqueue_longest_running_processor_seconds',
    'gauge',
    'How many seconds has the longest running processor for workqueue been running.',
    controllers.map((n) => ({ labels: queue(n), value: stuck(n) })),
  );

  // The process's, as prom-client writes them.
  family(
    'process_cpu_seconds_total',
    'counter',
    'Total user and system CPU time spent in seconds.',
    [{ labels: {}, value: grow(0.05, 12) }],
  );
  family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', [
    { labels: {}, value: 120 * MiB },
  ]);
  family(
    'process_start_time_seconds',
    'gauge',
    'Start time of the process since unix epoch in seconds.',
    [{ labels: {}, value: Math.floor(STARTED.getTime() / 1000) }],
  );
  family('nodejs_heap_size_used_bytes', 'gauge', 'Process heap size used from Node.js in bytes.', [
    { labels: {}, value: 40 * MiB },
  ]);
  family(
    'nodejs_eventloop_lag_p99_seconds',
    'gauge',
    'The 99th percentile of the recorded event loop delays.',
    [{ labels: {}, value: 0.012 }],
  );
  return families;
}

function escapeLabel(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function render(families: Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.series) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
      out.push(
        `${f.name}${s.suffix ?? ''}${labels.length ? `{${labels.join(',')}}` : ''} ${s.value}`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}

const standInStart = Date.now();
const nodeText = (trouble: boolean) => (): string =>
  render(nodeFamilies(trouble, (Date.now() - standInStart) / 1000));

// ---------------------------------------------------------------------------------------------

describe('manifests/observability: files', () => {
  it('prometheus.yml scrapes job conductor at 127.0.0.1:9090 every 15 s and loads alerts.yaml; promtool accepts it', async () => {
    const config = parseYaml(readFileSync(PROMETHEUS_YML, 'utf8')) as {
      rule_files: string[];
      scrape_configs: {
        job_name: string;
        scrape_interval?: string;
        static_configs: { targets: string[] }[];
      }[];
    };
    expect(config.rule_files.map((f) => join(dirname(PROMETHEUS_YML), f))).toEqual([ALERTS]);
    expect(config.scrape_configs).toEqual([
      expect.objectContaining({
        job_name: 'conductor',
        scrape_interval: '15s',
        static_configs: [{ targets: ['127.0.0.1:9090'] }],
      }),
    ]);
    // Rule files are relative to the config's directory: promtool finds alerts.yaml from anywhere.
    const r = await promtoolCheckConfig(PROMETHEUS_YML);
    expect(r).toMatchObject({ rc: 0, stderr: '' });
    expect(r.stdout).toContain('SUCCESS: 1 rule files found');
    expect(r.stdout).toContain(`SUCCESS: ${alertRules.length} rules found`);
    expect(r.stdout).not.toMatch(/WARNING|FAILED/);
  });

  it('promtool check rules reports nothing but success on alerts.yaml', async () => {
    const r = await promtoolCheckRules(ALERTS);
    expect(r).toEqual({
      rc: 0,
      stdout: `Checking ${ALERTS}\n  SUCCESS: ${alertRules.length} rules found\n\n`,
      stderr: '',
      output: `Checking ${ALERTS}\n  SUCCESS: ${alertRules.length} rules found\n\n`,
    });
  });

  it('every alert has a for, a severity, a templated summary and description, and selects job="conductor"', () => {
    expect(alertRules.length).toBeGreaterThanOrEqual(5);
    expect(new Set(alertRules.map((r) => r.alert)).size).toBe(alertRules.length);
    for (const r of alertRules) {
      const where = `alert ${r.alert ?? ''}`;
      expect({ where, for: r.for }).toEqual({ where, for: expect.stringMatching(/^\d+[smh]$/) });
      expect({ where, severity: r.labels?.severity }).toEqual({
        where,
        severity: expect.stringMatching(/^(critical|warning|info)$/),
      });
      expect({ where, summary: r.annotations?.summary }).toEqual({
        where,
        summary: expect.stringMatching(/\{\{ \$labels\.\w+ \}\}/),
      });
      expect({ where, description: r.annotations?.description }).toEqual({
        where,
        description: expect.stringMatching(/\{\{ \$labels\.\w+ \}\}/),
      });
      // Every selector of the expression has job="conductor" (cAdvisor's and kube-state-metrics'
      // names are shared with a cluster's own exporters).
      const names = metricNames(r.expr);
      expect(names.length).toBeGreaterThan(0);
      for (const name of names) {
        const uses = [...r.expr.matchAll(new RegExp(`\\b${name}\\b(\\{[^}]*\\})?`, 'g'))];
        for (const [use, selector] of uses) {
          expect({ where, use, job: selector?.includes('job="conductor"') }).toEqual({
            where,
            use,
            job: true,
          });
        }
      }
    }
  });

  it('the alerts the issue asks for are there', () => {
    const byExpr = (re: RegExp): string[] =>
      alertRules.filter((r) => re.test(r.expr)).map((r) => r.alert ?? '');
    expect(byExpr(/increase\(container_oom_events_total\b/)).toHaveLength(1);
    expect(byExpr(/increase\(kube_pod_container_status_restarts_total\b/)).toHaveLength(1);
    expect(byExpr(/rate\(controller_runtime_reconcile_errors_total\b/)).toHaveLength(1);
    expect(
      byExpr(/workqueue_longest_running_processor_seconds|workqueue_unfinished_work_seconds/),
    ).toHaveLength(1);
    expect(byExpr(/^up\{job="conductor"\} == 0$/)).toHaveLength(1);
  });

  it('the ServiceMonitor lives only here and selects the Service of manifests/deploy/metrics.yaml', () => {
    const [monitor, ...more] = parseAllDocuments(readFileSync(SERVICE_MONITOR, 'utf8')).map(
      (d) =>
        d.toJS() as {
          kind: string;
          metadata: { namespace: string };
          spec: {
            jobLabel: string;
            selector: { matchLabels: Record<string, string> };
            namespaceSelector: { matchNames: string[] };
            endpoints: { port: string; path: string; interval: string }[];
          };
        },
    );
    expect(more).toEqual([]);
    const services = parseAllDocuments(readFileSync(join(DEPLOY, 'metrics.yaml'), 'utf8'))
      .map(
        (d) =>
          d.toJS() as {
            kind: string;
            metadata: { namespace: string; labels: Record<string, string> };
            spec: { ports: { name: string }[] };
          },
      )
      .filter((d) => d.kind === 'Service');
    expect(services).toHaveLength(1);
    const service = services[0];
    expect(monitor?.kind).toBe('ServiceMonitor');
    expect(monitor?.spec.namespaceSelector.matchNames).toEqual([service?.metadata.namespace]);
    expect(service?.metadata.labels).toMatchObject(
      monitor?.spec.selector.matchLabels ?? { none: '' },
    );
    // The job label comes from the Service's label: job="conductor", as the rules select.
    expect(service?.metadata.labels[monitor?.spec.jobLabel ?? '']).toBe('conductor');
    expect(monitor?.spec.endpoints).toEqual([
      { port: service?.spec.ports[0]?.name, path: '/metrics', interval: '15s' },
    ]);
    // One copy: nothing in manifests/deploy/ is a ServiceMonitor.
    for (const f of ['daemonset.yaml', 'metrics.yaml', 'namespace.yaml', 'rbac.yaml']) {
      expect(readFileSync(join(DEPLOY, f), 'utf8')).not.toMatch(/^kind: ServiceMonitor/m);
    }
  });

  it('the dashboard: schema ≥ 36, a prometheus datasource variable, label_values variables, PromQL on every panel', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toBe('conductor');
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['namespace', 'container']) {
      const v = vars.get(name);
      expect(v).toMatchObject({
        type: 'query',
        datasource: { type: 'prometheus', uid: '${datasource}' },
      });
      expect(labelValues(variableQuery(v ?? { name, type: '' }))?.label).toBe(name);
    }
    // Every variable a query uses is defined (or built in).
    for (const { expr } of panelQueries) {
      for (const [, braced, bare] of expr.matchAll(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g)) {
        const name = braced ?? bare ?? '';
        if (!name.startsWith('__'))
          expect({ expr, name, defined: vars.has(name) }).toEqual({ expr, name, defined: true });
      }
    }
    expect(graphPanels.length).toBeGreaterThanOrEqual(15);
    const ds = { type: 'prometheus', uid: '${datasource}' };
    for (const p of graphPanels) {
      expect({ panel: p.title, datasource: p.datasource }).toEqual({
        panel: p.title,
        datasource: ds,
      });
      expect({ panel: p.title, targets: (p.targets ?? []).length > 0 }).toEqual({
        panel: p.title,
        targets: true,
      });
      for (const t of p.targets ?? []) {
        expect({
          panel: p.title,
          datasource: t.datasource,
          hasExpr: (t.expr ?? '').trim() !== '',
        }).toEqual({
          panel: p.title,
          datasource: ds,
          hasExpr: true,
        });
      }
    }
    for (const p of allPanels.filter((p) => p.type === 'row')) expect(p.targets ?? []).toEqual([]);
    // Unique ids, inside the 24-column grid, no two panels on the same cells.
    expect(new Set(allPanels.map((p) => p.id)).size).toBe(allPanels.length);
    const cells = new Map<string, string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect({ panel: p.title, fits: x >= 0 && w > 0 && x + w <= 24 && h > 0 }).toEqual({
        panel: p.title,
        fits: true,
      });
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          expect({ cell: `${i},${j}`, panel: p.title, takenBy: cells.get(`${i},${j}`) }).toEqual({
            cell: `${i},${j}`,
            panel: p.title,
            takenBy: undefined,
          });
          cells.set(`${i},${j}`, p.title);
        }
      }
    }
  });

  it('the dashboard shows what the issue asks for', () => {
    /** Panels whose queries use every one of these metric names. */
    const panelsWith = (...names: string[]): string[] =>
      graphPanels
        .filter((p) => {
          const used = new Set((p.targets ?? []).flatMap((t) => metricNames(t.expr ?? '')));
          return names.every((n) => used.has(n));
        })
        .map((p) => p.title);
    const wanted: string[][] = [
      ['conductor_containers'],
      ['kube_pod_container_status_restarts_total'],
      ['container_oom_events_total'],
      [
        'container_cpu_usage_seconds_total',
        'container_spec_cpu_quota',
        'container_spec_cpu_period',
      ],
      ['container_memory_working_set_bytes', 'container_spec_memory_limit_bytes'],
      ['container_threads', 'container_threads_max'],
      ['container_processes'],
      ['container_network_receive_bytes_total', 'container_network_transmit_bytes_total'],
      ['controller_runtime_reconcile_total'],
      ['controller_runtime_reconcile_errors_total'],
      ['controller_runtime_reconcile_time_seconds_bucket'],
      ['workqueue_depth'],
    ];
    for (const names of wanted)
      expect({ names, panels: panelsWith(...names).length > 0 }).toEqual({ names, panels: true });
    const latency = panelQueries.filter(({ expr }) =>
      expr.includes('controller_runtime_reconcile_time_seconds_bucket'),
    );
    expect(latency.length).toBeGreaterThan(0);
    for (const { expr } of latency)
      expect(expr).toMatch(/^histogram_quantile\(0\.\d+, sum by \([^)]*\ble\b[^)]*\) \(rate\(/);
  });

  it('finds metric names in PromQL', () => {
    expect(
      metricNames(
        'histogram_quantile(0.9, sum by (le, controller) (rate(a_bucket{job=~"x", le!="1"}[5m]))) / on (x) group_left(y) b offset 1m > bool 1e+00 and sum without (z) (c) unless max(time() - d:rec[1m:10s])',
      ),
    ).toEqual(['a_bucket', 'b', 'c', 'd:rec']);
    expect(metricNames('sum(rate(x{a="sum(y)"}[$__rate_interval]))')).toEqual(['x']);
  });

  it('every metric name in the dashboard and the alerts is one Conductor exports', () => {
    const used = new Map<string, string>();
    for (const { panel, expr } of panelQueries)
      for (const n of metricNames(expr)) used.set(n, `panel ${panel.title}`);
    for (const v of dashboard.templating.list) {
      for (const n of metricNames(labelValues(variableQuery(v))?.selector ?? ''))
        used.set(n, `variable ${v.name}`);
    }
    for (const r of alertRules)
      for (const n of metricNames(r.expr)) used.set(n, `alert ${r.alert ?? ''}`);
    expect(used.size).toBeGreaterThan(30);
    const unknown = [...used].filter(([n]) => !SERIES_NAMES.has(n));
    expect(unknown).toEqual([]);
  });

  it("the list's controller metrics are what controller/metrics/registry.ts exports, with the same types", async () => {
    const text = await new ConductorMetrics().scrape();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    const listed = Object.keys(CONTROLLER_METRICS).map((name) => [
      name,
      types.get(name) ?? 'missing',
    ]);
    expect(listed).toEqual(Object.entries(CONTROLLER_METRICS));
  });
});

describe('manifests/observability: against a real Prometheus', () => {
  const PREFIX = uniqueId('obsmf');
  let before: HostSnapshot;
  let trouble: ExpositionServer;
  let healthy: ExpositionServer;
  let down = '';
  let prom: Prometheus;

  beforeAll(async () => {
    before = hostSnapshot();
    trouble = await serveExposition(nodeText(true));
    healthy = await serveExposition(nodeText(false));
    down = `127.0.0.1:${await freePort()}`; // nothing listens there
    prom = await startPrometheus({
      targets: [trouble.target, healthy.target, down],
      ruleFiles: [ALERTS],
      prefix: PREFIX,
    });
    // Every target scraped at least twice: rate() has two samples.
    await prom.waitFor('count(count_over_time(up{job="conductor"}[1m]) >= 2)', {
      until: (s) => s[0]?.value === 3,
    });
  }, 60_000);

  afterAll(async () => {
    await prom?.stop();
    await trouble?.stop();
    await healthy?.stop();
    assertNoLeaks(before, { idPrefix: PREFIX });
  });

  it('the stand-in exposition is clean for promtool and uses only listed metrics, with their types', async () => {
    for (const text of [nodeText(true)(), nodeText(false)()]) {
      expect(await promtoolCheckMetrics(text)).toMatchObject({ rc: 0, output: '' });
      const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
      expect(types.filter(([name, type]) => name === undefined || METRICS[name] !== type)).toEqual(
        [],
      );
    }
    const targets = await prom.targets();
    expect(targets.map((t) => [t.labels.instance, t.health]).sort()).toEqual(
      [
        [trouble.target, 'up'],
        [healthy.target, 'up'],
        [down, 'down'],
      ].sort(),
    );
  });

  it('every dashboard query gives a non-empty numeric result, instant and over a range', async () => {
    expect(panelQueries.length).toBeGreaterThan(30);
    for (const { panel, target, expr } of panelQueries) {
      const query = substitute(expr);
      const where = `${panel.title} ${target.refId}: ${query}`;
      const samples = await prom
        .waitFor(query, {
          until: (s) => s.some((x) => Number.isFinite(x.value)),
          timeoutMs: 15_000,
        })
        .catch((err: Error) => {
          throw new Error(`${where}\n${err.message}`);
        });
      expect({ where, n: samples.length > 0 }).toEqual({ where, n: true });
      if (target.instant) continue;
      const end = Date.now() / 1000;
      const series = await prom.queryRange(query, { start: end - 10, end, stepSeconds: 1 });
      const points = series.flatMap((s) => s.values).filter((p) => Number.isFinite(p.value));
      expect({ where, points: points.length > 0 }).toEqual({ where, points: true });
    }
  }, 120_000);

  it('every variable query finds its label', async () => {
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      const lv = labelValues(variableQuery(v));
      expect({ variable: v.name, labelValues: lv !== undefined }).toEqual({
        variable: v.name,
        labelValues: true,
      });
      if (!lv) continue;
      const samples = await prom.waitFor(substitute(lv.selector), {
        until: (s) => s.some((x) => x.metric[lv.label] !== undefined),
      });
      expect(samples.length).toBeGreaterThan(0);
    }
  });

  it('every alert loads with health ok, fires on the node in trouble with its annotations expanded, and not on the healthy one', async () => {
    const wantInstance = (name: string): string =>
      name === 'ConductorDown' ? down : trouble.target;
    const onlyAlerting = (groups: Awaited<ReturnType<Prometheus['rules']>>): AlertingRule[] =>
      groups.flatMap((g) => g.rules).flatMap((r) => (r.type === 'alerting' ? [r] : []));
    // Wait until each rule has an active alert for its node (two evaluations with two scrapes).
    const deadline = Date.now() + 30_000;
    let loaded: AlertingRule[] = [];
    for (;;) {
      loaded = onlyAlerting(await prom.rules('alert'));
      const missing = alertRules.filter(
        (def) =>
          !loaded
            .find((r) => r.name === def.alert)
            ?.alerts.some(
              (a) => a.state !== 'inactive' && a.labels.instance === wantInstance(def.alert ?? ''),
            ),
      );
      if (missing.length === 0) break;
      if (Date.now() > deadline) {
        throw new Error(
          `not active: ${missing.map((m) => m.alert).join(', ')}\n${JSON.stringify(loaded, null, 1).slice(0, 4000)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }

    expect(loaded.map((r) => r.name).sort()).toEqual(alertRules.map((r) => r.alert).sort());
    for (const def of alertRules) {
      const rule = loaded.find((r) => r.name === def.alert);
      expect({ alert: def.alert, health: rule?.health, lastError: rule?.lastError ?? '' }).toEqual({
        alert: def.alert,
        health: 'ok',
        lastError: '',
      });
      expect(rule?.duration).toBe(seconds(def.for ?? '0s'));
      expect(rule?.labels).toEqual(def.labels);
      for (const a of rule?.alerts ?? []) {
        const where = `${def.alert ?? ''} on ${a.labels.instance ?? '?'}`;
        // The healthy node never alerts.
        expect({ where, instance: a.labels.instance === healthy.target }).toEqual({
          where,
          instance: false,
        });
        expect({ where, severity: a.labels.severity }).toEqual({
          where,
          severity: def.labels?.severity,
        });
        for (const key of ['summary', 'description']) {
          const text = a.annotations[key] ?? '';
          expect({
            where,
            key,
            text,
            bad: /<no value>|error expanding|\{\{|\}\}|^$/.test(text),
          }).toEqual({
            where,
            key,
            text,
            bad: false,
          });
        }
      }
    }
    // The container alerts name the container; the stuck-queue one counts its stuck workers
    // (client-go's reading of workqueue_unfinished_work_seconds: one here).
    const alertOf = (name: string) => loaded.find((r) => r.name === name)?.alerts[0];
    expect(alertOf('ConductorContainerOOMKilled')?.annotations.summary).toBe(
      'Container default/web was OOM-killed',
    );
    expect(alertOf('ConductorContainerOOMKilled')?.state).toBe('firing');
    expect(alertOf('ConductorWorkqueueStuck')?.labels.name).toBe('image');
    const stuck = /over 5 minutes\): ([0-9.]+)\./.exec(
      alertOf('ConductorWorkqueueStuck')?.annotations.description ?? '',
    );
    expect(Number(stuck?.[1])).toBeCloseTo(1, 0);
    expect(alertOf('ConductorContainerMemoryNearLimit')?.annotations.summary).toMatch(
      /default\/web is at 95\.\d+% of its memory limit/,
    );
    expect(existsSync(ALERTS)).toBe(true);
  }, 60_000);
});
