/**
 * What the queue records, and the interface it records through: client-go's workqueue
 * MetricsProvider. The queue calls new*Metric(name) once when it is created; the metrics package
 * implements the provider with prom-client, and the default provider records nothing.
 */

export interface GaugeMetric {
  inc(): void;
  dec(): void;
}

export interface SettableGaugeMetric {
  set(value: number): void;
}

export interface CounterMetric {
  inc(): void;
}

/** Observations are in seconds, as Prometheus expects. */
export interface HistogramMetric {
  observe(seconds: number): void;
}

export interface QueueMetricsProvider {
  /** workqueue_depth: keys waiting to be processed. */
  newDepthMetric(name: string): GaugeMetric;
  /** workqueue_adds_total: adds that were not deduplicated. */
  newAddsMetric(name: string): CounterMetric;
  /** workqueue_queue_duration_seconds: from add to get. */
  newLatencyMetric(name: string): HistogramMetric;
  /** workqueue_work_duration_seconds: from get to done. */
  newWorkDurationMetric(name: string): HistogramMetric;
  /** workqueue_unfinished_work_seconds: summed age of the keys being processed. */
  newUnfinishedWorkSecondsMetric(name: string): SettableGaugeMetric;
  /** workqueue_longest_running_processor_seconds: age of the oldest key being processed. */
  newLongestRunningProcessorSecondsMetric(name: string): SettableGaugeMetric;
  /** workqueue_retries_total: every addAfter / addRateLimited. */
  newRetriesMetric(name: string): CounterMetric;
}

const nothing = (): void => {};

export const noopQueueMetricsProvider: QueueMetricsProvider = {
  newDepthMetric: () => ({ inc: nothing, dec: nothing }),
  newAddsMetric: () => ({ inc: nothing }),
  newLatencyMetric: () => ({ observe: nothing }),
  newWorkDurationMetric: () => ({ observe: nothing }),
  newUnfinishedWorkSecondsMetric: () => ({ set: nothing }),
  newLongestRunningProcessorSecondsMetric: () => ({ set: nothing }),
  newRetriesMetric: () => ({ inc: nothing }),
};
