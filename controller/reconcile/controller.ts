/**
 * The controller loop (controller-runtime's internal/controller): N workers take keys from a
 * work queue, call the reconciler, and route its Result back into the queue. A key is never
 * reconciled by two workers at once (the queue guarantees it), and nothing a reconciler does,
 * throwing included, stops the loop.
 */
import { realClock, type Clock } from '../queue/clock.js';
import type { QueueMetricsProvider } from '../queue/metrics.js';
import { WorkQueue } from '../queue/queue.js';
import type { RateLimiter } from '../queue/rate-limiter.js';
import { DisposableStore, type Disposable } from './lifecycle.js';
import { noopReconcileMetrics, type ReconcileMetrics } from './metrics.js';
import { TerminalError, type Reconciler, type Result } from './result.js';

/** The subset of runtime-core's Logger the controller uses. */
export interface ControllerLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const silent: ControllerLogger = { info: () => {}, error: () => {} };

export interface ControllerOptions<K> {
  /** The controller's name: the `controller` label of its metrics and its queue's name. */
  name: string;
  reconciler: Reconciler<K>;
  /** Workers, i.e. reconciles that may run at once (MaxConcurrentReconciles). Default 1. */
  concurrency?: number;
  clock?: Clock;
  /** Default: the queue's default controller rate limiter. */
  rateLimiter?: RateLimiter<K>;
  queueMetrics?: QueueMetricsProvider;
  reconcileMetrics?: ReconcileMetrics;
  logger?: ControllerLogger;
}

export class Controller<K = string> {
  readonly name: string;
  /** Where event handlers add keys; owned by the controller and shut down by stop(). */
  readonly queue: WorkQueue<K>;
  private readonly reconciler: Reconciler<K>;
  private readonly concurrency: number;
  private readonly clock: Clock;
  private readonly metrics: ReconcileMetrics;
  private readonly logger: ControllerLogger;
  private readonly abort = new AbortController();
  private readonly watches = new DisposableStore();
  private workers: Promise<void>[] = [];
  /** Reconciles in flight: since when, and when their reconciler last said it progresses. */
  private readonly inflight = new Set<{ key: K; since: number; progressAt: number }>();
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private stopped: Promise<void> | undefined;

  constructor(options: ControllerOptions<K>) {
    this.name = options.name;
    this.reconciler = options.reconciler;
    this.concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RangeError(
        `controller ${options.name}: concurrency must be an integer >= 1, got ${options.concurrency}`,
      );
    }
    this.clock = options.clock ?? realClock;
    this.metrics = options.reconcileMetrics ?? noopReconcileMetrics;
    this.logger = options.logger ?? silent;
    this.queue = new WorkQueue<K>({
      name: options.name,
      clock: this.clock,
      ...(options.rateLimiter ? { rateLimiter: options.rateLimiter } : {}),
      ...(options.queueMetrics ? { metricsProvider: options.queueMetrics } : {}),
    });
    this.metrics.registerController(this.name, this.concurrency);
  }

  /** Starts the workers. Keys added before start() wait in the queue. */
  start(): void {
    if (this.state !== 'new') throw new Error(`controller ${this.name}: start() called twice`);
    this.state = 'running';
    this.logger.info('starting workers', { controller: this.name, workers: this.concurrency });
    for (let i = 0; i < this.concurrency; i++) this.workers.push(this.worker());
  }

  /**
   * Ties an event subscription that feeds this controller's queue (e.g.
   * `enqueueForObject(cache, controller.queue)`) to the controller: stop() disposes it first, so
   * no event arrives once stopping begins. The subscription is disposed at once if stop() has
   * already been called.
   */
  watch(subscription: Disposable): void {
    this.watches.add(subscription);
  }

  /**
   * Disposes the watches, stops taking keys, aborts the signal every running reconcile holds,
   * and resolves once they have all returned (their results are still counted; requeues are
   * dropped). Keys still queued are dropped: reconcilers are level-triggered, so the next
   * start's initial sync catches up. Idempotent.
   */
  stop(): Promise<void> {
    if (!this.stopped) {
      this.state = 'stopping';
      this.abort.abort(new Error(`controller ${this.name} is stopping`));
      const drained = this.queue.shutDownWithDrain();
      const unwatched = this.watches.dispose().catch((err: unknown) => {
        this.logger.error('controller: disposing a watch failed', {
          controller: this.name,
          error: String(err),
        });
      });
      this.stopped = (async () => {
        await Promise.all([drained, unwatched]);
        await Promise.all(this.workers);
        this.state = 'stopped';
      })();
    }
    return this.stopped;
  }

  private async worker(): Promise<void> {
    while (this.state === 'running') {
      const item = await this.queue.get();
      if (item.shutdown) return;
      if (this.state !== 'running') {
        // Handed out after stop() began (a key re-added while it was processing): drop it.
        this.queue.done(item.key);
        return;
      }
      try {
        await this.reconcileHandler(item.key);
      } catch (err) {
        // Only a failing logger or metrics hook gets here; the worker must survive it.
        this.logger.error('controller worker error', { controller: this.name, error: String(err) });
      } finally {
        this.queue.done(item.key);
      }
    }
  }

  /**
   * A reconcile of `key` in flight is making progress (an image build printing, a pull
   * receiving): it is not stuck however long it takes.
   */
  progress(key: K): void {
    const now = this.clock.now();
    for (const r of this.inflight) if (r.key === key) r.progressAt = now;
  }

  /**
   * The reconciles that have been running without progress for longer than `deadlineMs`, in
   * words (for /healthz); empty when none is. A worker stuck there reconciles nothing else.
   */
  stuck(deadlineMs: number): string[] {
    const now = this.clock.now();
    const out: string[] = [];
    for (const r of this.inflight) {
      if (now - r.progressAt <= deadlineMs) continue;
      const running = Math.round((now - r.since) / 1000);
      const quiet = Math.round((now - r.progressAt) / 1000);
      out.push(
        `controller ${this.name}: reconciling ${String(r.key)} for ${running} s` +
          (quiet < running ? ` (no progress for ${quiet} s)` : '') +
          `, past the ${Math.round(deadlineMs / 1000)} s deadline`,
      );
    }
    return out;
  }

  private async reconcileHandler(key: K): Promise<void> {
    const start = this.clock.now();
    const running = { key, since: start, progressAt: start };
    this.inflight.add(running);
    this.metrics.activeWorkers(this.name, 1);
    let result: Result;
    try {
      result = await this.reconciler.reconcile(key, this.abort.signal);
    } catch (err) {
      // A TerminalError says no retry can fix it; any other throw is a bug or an unexpected
      // failure, never a reason to stop the loop: retry it.
      result =
        err instanceof TerminalError
          ? { kind: 'terminal', error: err }
          : { kind: 'retry', error: err instanceof Error ? err : new Error(String(err)) };
    } finally {
      this.inflight.delete(running);
      this.metrics.activeWorkers(this.name, -1);
      this.metrics.reconcileTime(this.name, (this.clock.now() - start) / 1000);
    }
    this.route(key, result);
  }

  /** controller-runtime's reconcileHandler switch, with terminal errors forgotten. */
  private route(key: K, result: Result): void {
    switch (result.kind) {
      case 'done':
        this.queue.forget(key);
        this.metrics.reconcileTotal(this.name, 'success');
        return;
      case 'requeueAfter':
        this.queue.forget(key);
        this.queue.addAfter(key, result.afterMs);
        this.metrics.reconcileTotal(this.name, 'requeue_after');
        return;
      case 'retry':
        this.queue.addRateLimited(key);
        this.metrics.reconcileError(this.name);
        this.metrics.reconcileTotal(this.name, 'error');
        this.logger.error('reconciler error', {
          controller: this.name,
          key,
          error: result.error.message,
          requeues: this.queue.numRequeues(key),
        });
        return;
      case 'terminal':
        this.queue.forget(key);
        this.metrics.terminalReconcileError(this.name);
        this.metrics.reconcileError(this.name);
        this.metrics.reconcileTotal(this.name, 'error');
        this.logger.error('terminal reconciler error, not retrying', {
          controller: this.name,
          key,
          error: result.error.message,
        });
        return;
    }
  }
}
