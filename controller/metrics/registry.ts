/**
 * Conductor's metrics: a prom-client Registry of its own (never the global one) holding the
 * workqueue and reconcile metrics under the names and labels controller-runtime exports, so
 * dashboards and alerts written for Kubernetes controllers work unchanged, plus Conductor's own.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { ImageMetrics } from '../controllers/context.js';
import type { QueueMetricsProvider } from '../queue/metrics.js';
import type { ReconcileMetrics } from '../reconcile/metrics.js';
import { reconcileResultLabels, type ReconcileResultLabel } from '../reconcile/result.js';

/** controller-runtime's workqueue buckets: prometheus.ExponentialBuckets(10e-9, 10, 12). */
const WORKQUEUE_BUCKETS = Array.from({ length: 12 }, (_, i) => Number(`1e${i - 8}`));

/** controller-runtime's controller_runtime_reconcile_time_seconds buckets. */
const RECONCILE_TIME_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
  1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/**
 * prom-client default metrics that are gauges named *_total, which `promtool check metrics`
 * rejects (a _total suffix promises a counter). The same numbers stay available without the
 * suffix (nodejs_active_handles, nodejs_active_requests, nodejs_active_resources).
 */
const LINTED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

let processMetrics: Registry | undefined;

/**
 * The process_* and nodejs_* metrics, collected once per process: prom-client's collectors
 * install process-wide observers (GC, event-loop delay) that cannot be removed, so every
 * ConductorMetrics shares this one registry instead of adding observers of its own.
 */
function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics });
    for (const name of LINTED_DEFAULT_METRICS) processMetrics.removeSingleMetric(name);
    registerProcessCpu(processMetrics);
  }
  return processMetrics;
}

/**
 * CPU time since the process started, as Prometheus's Go client reports it. prom-client counts
 * only from when its collector was made, which at a controller's first scrape can still be 0.
 */
function registerProcessCpu(registry: Registry): void {
  const counters: [string, string, (u: NodeJS.CpuUsage) => number][] = [
    ['process_cpu_user_seconds_total', 'User CPU time spent in seconds.', (u) => u.user],
    ['process_cpu_system_seconds_total', 'System CPU time spent in seconds.', (u) => u.system],
    [
      'process_cpu_seconds_total',
      'Total user and system CPU time spent in seconds.',
      (u) => u.user + u.system,
    ],
  ];
  for (const [name, help, micros] of counters) {
    registry.removeSingleMetric(name);
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(micros(process.cpuUsage()) / 1e6);
      },
    });
  }
}

export interface ConductorMetricsOptions {
  /** Include process_* and nodejs_* metrics in scrapes. Default true. */
  defaultMetrics?: boolean;
}

/** Image builds and pulls take from milliseconds (all cached) to many minutes (debootstrap). */
const BUILD_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800];
const PULL_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** Renders metrics a prom-client metric cannot hold cheaply (hundreds of containers' rows). */
export type TextCollector = () => Promise<string>;

export class ConductorMetrics {
  /** Conductor's registry: register more metrics here, or with counter()/gauge()/histogram(). */
  readonly registry = new Registry();
  readonly queueMetricsProvider: QueueMetricsProvider;
  readonly reconcileMetrics: ReconcileMetrics;
  /** conductor_manifest_errors_total{file}: manifest files that failed to parse or validate. */
  readonly manifestErrors: Counter<'file'>;
  /** Builds, pulls and the layer cache, as the Image reconciler reports them. */
  readonly images: ImageMetrics;
  /**
   * conductor_events_total{kind,type,reason}: events recorded, each occurrence counted (a
   * repeat folded into one Event still counts), whichever source records them.
   */
  readonly events: Counter<'kind' | 'type' | 'reason'>;
  private readonly defaultMetrics: boolean;
  private readonly collectors: TextCollector[] = [];

  constructor(options: ConductorMetricsOptions = {}) {
    this.defaultMetrics = options.defaultMetrics ?? true;
    this.queueMetricsProvider = workqueueMetrics(this.registry);
    this.reconcileMetrics = reconcileMetrics(this.registry);
    this.manifestErrors = this.counter(
      'conductor_manifest_errors_total',
      'Total number of times a manifest file failed to parse or validate, per file.',
      ['file'],
    );
    this.events = this.counter(
      'conductor_events_total',
      'Total number of events recorded, per kind of object, type and reason.',
      ['kind', 'type', 'reason'],
    );
    const build = this.histogram(
      'conductor_image_build_duration_seconds',
      'Time an Image build took, from its start to Ready, for builds that pulled or ran a step.',
      [],
      BUILD_BUCKETS,
    );
    const pull = this.histogram(
      'conductor_image_pull_duration_seconds',
      'Time an Image build spent pulling or importing its base (skopeo and unpacking).',
      [],
      PULL_BUCKETS,
    );
    const cache = this.counter(
      'conductor_image_layer_cache_total',
      'Image build steps found in the layer cache (result hit) or run (result miss).',
      ['result'],
    );
    cache.inc({ result: 'hit' }, 0);
    cache.inc({ result: 'miss' }, 0);
    this.images = {
      built: (seconds) => build.observe(seconds),
      pulled: (seconds) => pull.observe(seconds),
      layerCache: (hits, misses) => {
        cache.inc({ result: 'hit' }, hits);
        cache.inc({ result: 'miss' }, misses);
      },
    };
  }

  /** Adds text rendered at every scrape, after the registry's metrics. */
  addCollector(collect: TextCollector): void {
    this.collectors.push(collect);
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    buckets?: number[],
  ): Histogram<L> {
    return new Histogram({
      name,
      help,
      labelNames,
      registers: [this.registry],
      ...(buckets ? { buckets } : {}),
    });
  }

  /** The Prometheus text exposition of everything, as /metrics serves it. */
  async scrape(): Promise<string> {
    const registry = this.defaultMetrics
      ? Registry.merge([processRegistry(), this.registry])
      : this.registry;
    const texts = await Promise.all([registry.metrics(), ...this.collectors.map((c) => c())]);
    return texts.join('');
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** client-go's MetricsProvider with controller-runtime's metrics: labels name and controller. */
function workqueueMetrics(registry: Registry): QueueMetricsProvider {
  const labelNames = ['name', 'controller'] as const;
  const registers = [registry];
  const depth = new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue',
    labelNames,
    registers,
  });
  const adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames,
    registers,
  });
  const latency = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames,
    buckets: WORKQUEUE_BUCKETS,
    registers,
  });
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes.',
    labelNames,
    buckets: WORKQUEUE_BUCKETS,
    registers,
  });
  const unfinished = new Gauge({
    name: 'workqueue_unfinished_work_seconds',
    help:
      "How many seconds of work has been done that is in progress and hasn't been observed by " +
      'work_duration. Large values indicate stuck threads. One can deduce the number of stuck ' +
      'threads by observing the rate at which this increases.',
    labelNames,
    registers,
  });
  const longest = new Gauge({
    name: 'workqueue_longest_running_processor_seconds',
    help: 'How many seconds has the longest running processor for workqueue been running.',
    labelNames,
    registers,
  });
  const retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames,
    registers,
  });
  const labels = (name: string) => ({ name, controller: name });
  return {
    newDepthMetric(name) {
      const child = depth.labels(labels(name));
      child.set(0);
      return { inc: () => child.inc(), dec: () => child.dec() };
    },
    newAddsMetric(name) {
      const child = adds.labels(labels(name));
      child.inc(0);
      return { inc: () => child.inc() };
    },
    newLatencyMetric(name) {
      const child = latency.labels(labels(name));
      return { observe: (s) => child.observe(s) };
    },
    newWorkDurationMetric(name) {
      const child = workDuration.labels(labels(name));
      return { observe: (s) => child.observe(s) };
    },
    newUnfinishedWorkSecondsMetric(name) {
      const child = unfinished.labels(labels(name));
      child.set(0);
      return { set: (v) => child.set(v) };
    },
    newLongestRunningProcessorSecondsMetric(name) {
      const child = longest.labels(labels(name));
      child.set(0);
      return { set: (v) => child.set(v) };
    },
    newRetriesMetric(name) {
      const child = retries.labels(labels(name));
      child.inc(0);
      return { inc: () => child.inc() };
    },
  };
}

function reconcileMetrics(registry: Registry): ReconcileMetrics {
  const registers = [registry];
  const total = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'] as const,
    registers,
  });
  const errors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const terminal = new Counter({
    name: 'controller_runtime_terminal_reconcile_errors_total',
    help: 'Total number of terminal reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const time = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'] as const,
    buckets: RECONCILE_TIME_BUCKETS,
    registers,
  });
  const maxConcurrent = new Gauge({
    name: 'controller_runtime_max_concurrent_reconciles',
    help: 'Maximum number of concurrent reconciles per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const active = new Gauge({
    name: 'controller_runtime_active_workers',
    help: 'Number of currently used workers per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  return {
    registerController(controller, maxConcurrentReconciles) {
      // As controller-runtime's initMetrics: every series exists from the start, at zero.
      for (const result of reconcileResultLabels) total.inc({ controller, result }, 0);
      errors.inc({ controller }, 0);
      terminal.inc({ controller }, 0);
      active.set({ controller }, 0);
      maxConcurrent.set({ controller }, maxConcurrentReconciles);
    },
    reconcileTotal(controller, result: ReconcileResultLabel) {
      total.inc({ controller, result });
    },
    reconcileError(controller) {
      errors.inc({ controller });
    },
    terminalReconcileError(controller) {
      terminal.inc({ controller });
    },
    reconcileTime(controller, seconds) {
      time.observe({ controller }, seconds);
    },
    activeWorkers(controller, delta) {
      active.inc({ controller }, delta);
    },
  };
}
