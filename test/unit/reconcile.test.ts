import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';

import { FakeClock } from '../../controller/queue/index.js';
import {
  Controller,
  DisposableStore,
  done,
  requeueAfter,
  retry,
  terminal,
  type ReconcileMetrics,
  type ReconcileResultLabel,
  type Reconciler,
  type Result,
} from '../../controller/reconcile/index.js';

/** Lets pending promise callbacks run (no time passes: the clock is fake). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function recordingMetrics() {
  const m = {
    total: new Map<string, number>(),
    errors: 0,
    terminal: 0,
    times: [] as number[],
    active: 0,
    maxActive: 0,
    maxConcurrent: 0,
  };
  const metrics: ReconcileMetrics = {
    registerController: (_c, max) => {
      m.maxConcurrent = max;
      for (const r of ['success', 'error', 'requeue', 'requeue_after']) m.total.set(r, 0);
    },
    reconcileTotal: (_c, r: ReconcileResultLabel) => m.total.set(r, (m.total.get(r) ?? 0) + 1),
    reconcileError: () => m.errors++,
    terminalReconcileError: () => m.terminal++,
    reconcileTime: (_c, s) => m.times.push(s),
    activeWorkers: (_c, d) => {
      m.active += d;
      m.maxActive = Math.max(m.maxActive, m.active);
    },
  };
  return { m, metrics };
}

/** A reconciler that answers from a per-key script and logs each call. */
class ScriptedReconciler implements Reconciler<string> {
  readonly calls: string[] = [];
  constructor(private readonly script: Record<string, (() => Result | Promise<Result>)[]>) {}
  async reconcile(key: string): Promise<Result> {
    this.calls.push(key);
    const next = this.script[key]?.shift();
    if (!next) return done();
    return next();
  }
}

// Every controller a test starts is stopped after it, pass or fail.
let controllers = new DisposableStore();
beforeEach(() => {
  controllers = new DisposableStore();
});
afterEach(() => controllers.dispose());

function newController(
  reconciler: Reconciler<string>,
  options: { concurrency?: number; clock?: FakeClock } = {},
) {
  const clock = options.clock ?? new FakeClock();
  const { m, metrics } = recordingMetrics();
  const controller = new Controller<string>({
    name: 'test',
    reconciler,
    clock,
    reconcileMetrics: metrics,
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
  });
  controllers.defer(() => controller.stop());
  return { controller, clock, m };
}

describe('Controller', () => {
  it('done: reconciled once, backoff forgotten, counted as success', async () => {
    const r = new ScriptedReconciler({});
    const { controller, m } = newController(r);
    controller.start();
    controller.queue.add('ns/a');
    await settle();
    expect(r.calls).toEqual(['ns/a']);
    expect(m.total.get('success')).toBe(1);
    expect(m.times).toHaveLength(1);
    expect(controller.queue.numRequeues('ns/a')).toBe(0);
    expect(m.maxConcurrent).toBe(1);
  });

  it('retry: requeued with backoff (5 ms, 10 ms), counted as error, forgotten on success', async () => {
    const failure = () => retry(new Error('runtime busy'));
    const r = new ScriptedReconciler({ k: [failure, failure] });
    const { controller, clock, m } = newController(r);
    controller.start();
    controller.queue.add('k');
    await settle();
    expect(r.calls).toHaveLength(1);
    expect(controller.queue.numRequeues('k')).toBe(1);
    clock.step(4);
    await settle();
    expect(r.calls).toHaveLength(1);
    clock.step(1);
    await settle();
    expect(r.calls).toHaveLength(2);
    clock.step(9);
    await settle();
    expect(r.calls).toHaveLength(2);
    clock.step(1);
    await settle();
    expect(r.calls).toHaveLength(3);
    expect(m.total.get('error')).toBe(2);
    expect(m.total.get('success')).toBe(1);
    expect(m.errors).toBe(2);
    expect(m.terminal).toBe(0);
    expect(controller.queue.numRequeues('k')).toBe(0);
  });

  it('a thrown exception is a retry and never stops the workers', async () => {
    const r = new ScriptedReconciler({
      k: [
        () => {
          throw new Error('bug');
        },
        () => Promise.reject('not even an Error'),
      ],
    });
    const { controller, clock, m } = newController(r);
    controller.start();
    controller.queue.add('k');
    await settle();
    clock.step(5);
    await settle();
    clock.step(10);
    await settle();
    expect(r.calls).toEqual(['k', 'k', 'k']);
    expect(m.total.get('error')).toBe(2);
    expect(m.total.get('success')).toBe(1);
    controller.queue.add('other');
    await settle();
    expect(r.calls).toEqual(['k', 'k', 'k', 'other']);
  });

  it('terminal: counted, not retried, backoff forgotten', async () => {
    const r = new ScriptedReconciler({
      k: [() => retry(new Error('first')), () => terminal(new Error('invalid spec'))],
    });
    const { controller, clock, m } = newController(r);
    controller.start();
    controller.queue.add('k');
    await settle();
    clock.step(5);
    await settle();
    expect(r.calls).toHaveLength(2);
    clock.step(3_600_000);
    await settle();
    expect(r.calls).toHaveLength(2);
    expect(m.terminal).toBe(1);
    expect(m.errors).toBe(2);
    expect(m.total.get('error')).toBe(2);
    expect(controller.queue.numRequeues('k')).toBe(0);
    expect(controller.queue.numWaiting()).toBe(0);
    controller.queue.add('k'); // a change enqueues it again
    await settle();
    expect(r.calls).toHaveLength(3);
  });

  it('requeueAfter: reconciled again after the delay, counted as requeue_after', async () => {
    const r = new ScriptedReconciler({ k: [() => requeueAfter(10_000)] });
    const { controller, clock, m } = newController(r);
    controller.start();
    controller.queue.add('k');
    await settle();
    clock.step(9_999);
    await settle();
    expect(r.calls).toHaveLength(1);
    clock.step(1);
    await settle();
    expect(r.calls).toHaveLength(2);
    expect(m.total.get('requeue_after')).toBe(1);
    expect(m.total.get('success')).toBe(1);
    expect(m.total.get('requeue')).toBe(0);
  });

  it('runs up to `concurrency` reconciles at once, never one key twice at once', async () => {
    const release = new Map<string, () => void>();
    const running = new Set<string>();
    let overlap = false;
    const reconciler: Reconciler<string> = {
      reconcile: (key) =>
        new Promise<Result>((resolve) => {
          if (running.has(key)) overlap = true;
          running.add(key);
          release.set(key, () => {
            running.delete(key);
            resolve(done());
          });
        }),
    };
    const { controller, m } = newController(reconciler, { concurrency: 2 });
    controller.start();
    for (const k of ['a', 'b', 'c']) controller.queue.add(k);
    await settle();
    expect([...running].sort()).toEqual(['a', 'b']);
    expect(m.active).toBe(2);
    controller.queue.add('a'); // changed while reconciling: once more after it finishes
    release.get('a')?.();
    await settle();
    expect([...running].sort()).toEqual(['b', 'c']);
    release.get('b')?.();
    await settle();
    expect([...running].sort()).toEqual(['a', 'c']);
    release.get('a')?.();
    release.get('c')?.();
    await settle();
    expect(running.size).toBe(0);
    expect(overlap).toBe(false);
    expect(m.maxActive).toBe(2);
    expect(m.active).toBe(0);
    expect(m.maxConcurrent).toBe(2);
    expect(m.total.get('success')).toBe(4);
  });

  it('stop() aborts the signal, waits for in-flight reconciles and drops queued keys', async () => {
    const signals: AbortSignal[] = [];
    let finish: (() => void) | undefined;
    const calls: string[] = [];
    const reconciler: Reconciler<string> = {
      reconcile: (key, signal) => {
        calls.push(key);
        signals.push(signal);
        return new Promise<Result>((resolve) => {
          finish = () => resolve(retry(new Error('interrupted')));
        });
      },
    };
    const { controller, clock } = newController(reconciler);
    controller.start();
    controller.queue.add('a');
    controller.queue.add('b');
    await settle();
    expect(calls).toEqual(['a']);
    controller.queue.add('a'); // changed while reconciling: must not keep stop() waiting
    let stopped = false;
    const stopping = controller.stop().then(() => (stopped = true));
    await settle();
    expect(signals[0]?.aborted).toBe(true);
    expect(stopped).toBe(false); // 'a' is still reconciling
    finish?.();
    await stopping;
    expect(calls).toEqual(['a']); // 'b' was dropped; the retry of 'a' was not scheduled
    expect(controller.queue.numWaiting()).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    await controller.stop(); // idempotent
  });

  it('watch() subscriptions feed the queue until stop() disposes them', async () => {
    const r = new ScriptedReconciler({});
    const { controller } = newController(r);
    const listeners = new Set<(key: string) => void>();
    const emit = (key: string) => listeners.forEach((l) => l(key));
    const listener = (key: string) => controller.queue.add(key);
    listeners.add(listener);
    controller.watch({ dispose: () => void listeners.delete(listener) });
    controller.start();
    emit('a');
    await settle();
    expect(r.calls).toEqual(['a']);
    await controller.stop();
    expect(listeners.size).toBe(0);
    let late = false;
    controller.watch({ dispose: () => void (late = true) });
    expect(late).toBe(true);
  });

  it('stuck(): a reconcile running past the deadline without progress, until it ends', async () => {
    let finish!: () => void;
    const r = new ScriptedReconciler({
      slow: [() => new Promise<Result>((resolve) => (finish = () => resolve(done())))],
    });
    const { controller, clock } = newController(r);
    controller.start();
    controller.queue.add('slow');
    await settle();
    clock.step(60_000);
    expect(controller.stuck(60_000)).toEqual([]);
    clock.step(1_000);
    expect(controller.stuck(60_000)).toEqual([
      'controller test: reconciling slow for 61 s, past the 60 s deadline',
    ]);
    // Progress (a build printing) resets the clock; the whole running time is still said.
    controller.progress('slow');
    expect(controller.stuck(60_000)).toEqual([]);
    clock.step(90_000);
    expect(controller.stuck(60_000)).toEqual([
      'controller test: reconciling slow for 151 s (no progress for 90 s), past the 60 s deadline',
    ]);
    finish();
    await settle();
    expect(controller.stuck(60_000)).toEqual([]);
  });

  it('rejects a bad concurrency and a second start()', () => {
    const r = new ScriptedReconciler({});
    expect(() => new Controller({ name: 'x', reconciler: r, concurrency: 0 })).toThrow(RangeError);
    const { controller } = newController(r);
    controller.start();
    expect(() => controller.start()).toThrow(/twice/);
  });
});

describe('DisposableStore', () => {
  it('disposes newest first, all of them, and reports every failure', async () => {
    const order: string[] = [];
    const store = new DisposableStore();
    store.defer(() => void order.push('first'));
    store.defer(() => {
      order.push('second');
      throw new Error('second failed');
    });
    store.add({ dispose: async () => void order.push('third') });
    await expect(store.dispose()).rejects.toThrow('second failed');
    expect(order).toEqual(['third', 'second', 'first']);
    store.defer(() => void order.push('late')); // disposed at once
    expect(order).toContain('late');
    await store.dispose(); // nothing left
  });
});
