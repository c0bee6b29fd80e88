/**
 * The rate-limited work queue controllers pull keys from: client-go's workqueue (Typed,
 * delaying and rate-limiting layers) in one class, with the same guarantees:
 *
 * - A key is never processed by two workers at once, and never queued twice: adding a key that
 *   is already queued does nothing; adding one that is being processed marks it dirty, and
 *   done() queues it again so the change is not lost.
 * - Keys come out in the order they were first added (FIFO).
 * - addAfter() holds a key back until a time; if the key is already waiting, the earlier time
 *   wins. addRateLimited() is addAfter() with the delay the rate limiter picks for that key.
 * - After shutDown() nothing new is accepted (delayed keys are dropped) and get() calls that
 *   find the queue empty resolve with shutdown: true. Keys already queued are still handed out,
 *   as in client-go; a controller that drains stops calling get() instead.
 *
 * Keys are compared as Map keys (SameValueZero): use strings (namespace/name) or numbers.
 */
import { realClock, type Clock, type Timer } from './clock.js';
import {
  noopQueueMetricsProvider,
  type CounterMetric,
  type GaugeMetric,
  type HistogramMetric,
  type QueueMetricsProvider,
  type SettableGaugeMetric,
} from './metrics.js';
import { defaultControllerRateLimiter, type RateLimiter } from './rate-limiter.js';

export type GetResult<K> = { shutdown: false; key: K } | { shutdown: true };

export interface WorkQueueOptions<K> {
  /** The `name` label of its metrics (controller-runtime uses the controller's name). */
  name: string;
  clock?: Clock;
  /** Default: defaultControllerRateLimiter (5 ms → 1000 s per key, 10 qps / 100 burst). */
  rateLimiter?: RateLimiter<K>;
  metricsProvider?: QueueMetricsProvider;
}

/** While keys are processing, the unfinished-work gauges refresh this often (as client-go). */
const UNFINISHED_WORK_UPDATE_MS = 500;

export class WorkQueue<K = string> {
  readonly name: string;
  private readonly clock: Clock;
  private readonly rateLimiter: RateLimiter<K>;
  private readonly metrics: QueueMetrics<K>;

  /** Keys ready to be handed out, in order. */
  private readonly queue: K[] = [];
  /** Keys that need processing: queued, or re-added while being processed. */
  private readonly dirty = new Set<K>();
  private readonly processing = new Set<K>();
  /** Pending get() calls, oldest first; non-empty only while the queue is empty. */
  private readonly getters: ((result: GetResult<K>) => void)[] = [];
  /** Delayed keys and when they become ready. */
  private readonly waiting = new Map<K, number>();
  private waitingTimer: { timer: Timer; at: number } | undefined;
  private unfinishedTicker: Timer | undefined;
  private shuttingDown = false;
  private readonly drainWaiters: (() => void)[] = [];

  constructor(options: WorkQueueOptions<K>) {
    this.name = options.name;
    this.clock = options.clock ?? realClock;
    this.rateLimiter = options.rateLimiter ?? defaultControllerRateLimiter<K>(this.clock);
    this.metrics = new QueueMetrics<K>(
      options.name,
      options.metricsProvider ?? noopQueueMetricsProvider,
      this.clock,
    );
  }

  add(key: K): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics.add(key);
    this.dirty.add(key);
    if (this.processing.has(key)) return; // done() queues it again
    this.queue.push(key);
    this.handOut();
  }

  /** Adds key once ms have passed (ms <= 0 or NaN: now). Counts as a retry, as in client-go. */
  addAfter(key: K, ms: number): void {
    if (this.shuttingDown) return;
    this.metrics.retry();
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const existing = this.waiting.get(key);
    if (existing !== undefined && existing <= at) return;
    this.waiting.set(key, at);
    this.scheduleWaiting();
  }

  /** Adds key after the delay the rate limiter gives it (which counts one more requeue). */
  addRateLimited(key: K): void {
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** Ends key's backoff streak; it does not remove the key from the queue. */
  forget(key: K): void {
    this.rateLimiter.forget(key);
  }

  numRequeues(key: K): number {
    return this.rateLimiter.numRequeues(key);
  }

  /**
   * The next key to process; waits while the queue is empty. Every key received must be passed
   * to done() when its processing ends.
   */
  get(): Promise<GetResult<K>> {
    if (this.queue.length > 0) return Promise.resolve({ shutdown: false, key: this.take() });
    if (this.shuttingDown) return Promise.resolve({ shutdown: true });
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Marks key's processing finished; a key re-added meanwhile is queued again. */
  done(key: K): void {
    if (!this.processing.delete(key)) return;
    this.metrics.done(key);
    if (this.dirty.has(key)) {
      this.queue.push(key);
      this.handOut();
    }
    if (this.processing.size === 0) {
      this.unfinishedTicker?.cancel();
      this.unfinishedTicker = undefined;
      this.metrics.updateUnfinishedWork(this.processing);
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
  }

  /** Stops accepting keys; pending get() calls on an empty queue resolve with shutdown. */
  shutDown(): void {
    this.shuttingDown = true;
    this.waiting.clear();
    this.waitingTimer?.timer.cancel();
    this.waitingTimer = undefined;
    if (this.queue.length === 0) {
      for (const resolve of this.getters.splice(0)) resolve({ shutdown: true });
    }
  }

  /** shutDown(), then resolves once every key handed out has been passed to done(). */
  shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Keys queued and ready (not delayed, not being processed). */
  len(): number {
    return this.queue.length;
  }

  /** Keys waiting for an addAfter / addRateLimited delay to pass. */
  numWaiting(): number {
    return this.waiting.size;
  }

  /** Keys handed out and not yet done. */
  numProcessing(): number {
    return this.processing.size;
  }

  private take(): K {
    const key = this.queue.shift() as K;
    this.metrics.get(key);
    this.processing.add(key);
    this.dirty.delete(key);
    if (!this.unfinishedTicker) {
      this.unfinishedTicker = this.clock.setTimer(
        () => this.tickUnfinishedWork(),
        UNFINISHED_WORK_UPDATE_MS,
      );
    }
    return key;
  }

  private handOut(): void {
    while (this.getters.length > 0 && this.queue.length > 0) {
      const resolve = this.getters.shift();
      resolve?.({ shutdown: false, key: this.take() });
    }
  }

  /** Refreshes the unfinished-work gauges while anything is processing; done() stops it. */
  private tickUnfinishedWork(): void {
    this.unfinishedTicker = undefined;
    this.metrics.updateUnfinishedWork(this.processing);
    if (this.processing.size > 0) {
      this.unfinishedTicker = this.clock.setTimer(
        () => this.tickUnfinishedWork(),
        UNFINISHED_WORK_UPDATE_MS,
      );
    }
  }

  /** Keeps exactly one timer, set for the earliest delayed key. */
  private scheduleWaiting(): void {
    let earliest = Infinity;
    for (const at of this.waiting.values()) earliest = Math.min(earliest, at);
    if (this.waitingTimer?.at === earliest) return;
    this.waitingTimer?.timer.cancel();
    this.waitingTimer = undefined;
    if (earliest === Infinity) return;
    const timer = this.clock.setTimer(() => this.releaseWaiting(), earliest - this.clock.now());
    this.waitingTimer = { timer, at: earliest };
  }

  private releaseWaiting(): void {
    this.waitingTimer = undefined;
    const now = this.clock.now();
    const ready = [...this.waiting].filter(([, at]) => at <= now).sort((a, b) => a[1] - b[1]);
    for (const [key] of ready) {
      this.waiting.delete(key);
      this.add(key);
    }
    this.scheduleWaiting();
  }
}

/** client-go's defaultQueueMetrics: the bookkeeping behind the provider's metrics. */
class QueueMetrics<K> {
  private readonly depth: GaugeMetric;
  private readonly adds: CounterMetric;
  private readonly latency: HistogramMetric;
  private readonly workDuration: HistogramMetric;
  private readonly unfinishedWork: SettableGaugeMetric;
  private readonly longestRunning: SettableGaugeMetric;
  private readonly retries: CounterMetric;
  private readonly addTimes = new Map<K, number>();
  private readonly processingStartTimes = new Map<K, number>();

  constructor(
    name: string,
    provider: QueueMetricsProvider,
    private readonly clock: Clock,
  ) {
    this.depth = provider.newDepthMetric(name);
    this.adds = provider.newAddsMetric(name);
    this.latency = provider.newLatencyMetric(name);
    this.workDuration = provider.newWorkDurationMetric(name);
    this.unfinishedWork = provider.newUnfinishedWorkSecondsMetric(name);
    this.longestRunning = provider.newLongestRunningProcessorSecondsMetric(name);
    this.retries = provider.newRetriesMetric(name);
  }

  add(key: K): void {
    this.adds.inc();
    this.depth.inc();
    if (!this.addTimes.has(key)) this.addTimes.set(key, this.clock.now());
  }

  get(key: K): void {
    const now = this.clock.now();
    this.depth.dec();
    this.processingStartTimes.set(key, now);
    const added = this.addTimes.get(key);
    if (added !== undefined) {
      this.latency.observe((now - added) / 1000);
      this.addTimes.delete(key);
    }
  }

  done(key: K): void {
    const started = this.processingStartTimes.get(key);
    if (started === undefined) return;
    this.workDuration.observe((this.clock.now() - started) / 1000);
    this.processingStartTimes.delete(key);
  }

  retry(): void {
    this.retries.inc();
  }

  updateUnfinishedWork(processing: ReadonlySet<K>): void {
    const now = this.clock.now();
    let total = 0;
    let oldest = 0;
    for (const key of processing) {
      const started = this.processingStartTimes.get(key);
      if (started === undefined) continue;
      const age = now - started;
      total += age;
      oldest = Math.max(oldest, age);
    }
    this.unfinishedWork.set(total / 1000);
    this.longestRunning.set(oldest / 1000);
  }
}
