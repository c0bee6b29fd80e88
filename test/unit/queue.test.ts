import { describe, expect, it } from '@jest/globals';

import {
  BucketRateLimiter,
  defaultControllerRateLimiter,
  FakeClock,
  ItemExponentialFailureRateLimiter,
  MaxOfRateLimiter,
  WorkQueue,
  type QueueMetricsProvider,
} from '../../controller/queue/index.js';

/** Lets pending promise callbacks run (no time passes: the clock is fake). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

async function getKey(q: WorkQueue): Promise<string> {
  const item = await q.get();
  if (item.shutdown) throw new Error('queue shut down');
  return item.key;
}

function newQueue(clock = new FakeClock(), metricsProvider?: QueueMetricsProvider) {
  return new WorkQueue<string>({
    name: 'test',
    clock,
    ...(metricsProvider ? { metricsProvider } : {}),
  });
}

/** A provider that keeps the last value of each metric and every observation. */
function recordingProvider() {
  const m = {
    depth: 0,
    adds: 0,
    retries: 0,
    latency: [] as number[],
    work: [] as number[],
    unfinished: 0,
    longest: 0,
    names: new Set<string>(),
  };
  const provider: QueueMetricsProvider = {
    newDepthMetric: (n) => (m.names.add(n), { inc: () => m.depth++, dec: () => m.depth-- }),
    newAddsMetric: () => ({ inc: () => m.adds++ }),
    newLatencyMetric: () => ({ observe: (s) => m.latency.push(s) }),
    newWorkDurationMetric: () => ({ observe: (s) => m.work.push(s) }),
    newUnfinishedWorkSecondsMetric: () => ({ set: (v) => (m.unfinished = v) }),
    newLongestRunningProcessorSecondsMetric: () => ({ set: (v) => (m.longest = v) }),
    newRetriesMetric: () => ({ inc: () => m.retries++ }),
  };
  return { m, provider };
}

describe('WorkQueue', () => {
  it('hands keys out in FIFO order and dedupes keys already queued', async () => {
    const q = newQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.len()).toBe(2);
    expect(await getKey(q)).toBe('a');
    expect(await getKey(q)).toBe('b');
    expect(q.len()).toBe(0);
    q.done('a');
    q.done('b');
  });

  it('re-queues a key added while it is processing only after done()', async () => {
    const q = newQueue();
    q.add('a');
    expect(await getKey(q)).toBe('a');
    q.add('a');
    q.add('a');
    expect(q.len()).toBe(0); // never handed to a second worker while processing
    q.done('a');
    expect(q.len()).toBe(1);
    expect(await getKey(q)).toBe('a');
    q.done('a');
    expect(q.len()).toBe(0);
    expect(q.numProcessing()).toBe(0);
  });

  it('get() waits for a key, and waiting getters are served in order', async () => {
    const q = newQueue();
    const got: string[] = [];
    const first = q.get().then((r) => !r.shutdown && got.push(`1:${r.key}`));
    const second = q.get().then((r) => !r.shutdown && got.push(`2:${r.key}`));
    await settle();
    expect(got).toEqual([]);
    q.add('x');
    q.add('y');
    await Promise.all([first, second]);
    expect(got).toEqual(['1:x', '2:y']);
  });

  it('addAfter holds a key back until its time; the earlier time wins', async () => {
    const clock = new FakeClock();
    const q = newQueue(clock);
    q.addAfter('a', 100);
    q.addAfter('a', 50);
    q.addAfter('a', 500); // later than what is waiting: ignored
    q.addAfter('b', 70);
    expect(q.numWaiting()).toBe(2);
    clock.step(49);
    expect(q.len()).toBe(0);
    clock.step(1);
    expect(q.len()).toBe(1);
    clock.step(20);
    expect(q.len()).toBe(2);
    expect(q.numWaiting()).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    expect(await getKey(q)).toBe('a');
    expect(await getKey(q)).toBe('b');
  });

  it('addAfter with no delay adds at once', () => {
    const q = newQueue();
    q.addAfter('a', 0);
    q.addAfter('b', -5);
    expect(q.len()).toBe(2);
  });

  it('addRateLimited backs off per key from 5 ms, doubling, until forget()', async () => {
    const clock = new FakeClock();
    const q = newQueue(clock);
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      q.addRateLimited('a');
      let waited = 0;
      while (q.len() === 0 && waited < 1000) {
        clock.step(1);
        waited++;
      }
      delays.push(waited);
      q.done(await getKey(q));
    }
    expect(delays).toEqual([5, 10, 20, 40]);
    expect(q.numRequeues('a')).toBe(4);
    expect(q.numRequeues('b')).toBe(0);
    q.forget('a');
    expect(q.numRequeues('a')).toBe(0);
  });

  it('shutDown() stops accepting keys, drops delayed ones and wakes getters', async () => {
    const clock = new FakeClock();
    const q = newQueue(clock);
    const pending = q.get();
    q.addAfter('later', 1000);
    expect(clock.pendingTimers()).toBe(1);
    q.shutDown();
    expect(await pending).toEqual({ shutdown: true });
    expect(clock.pendingTimers()).toBe(0);
    q.add('new');
    q.addAfter('new', 1);
    q.addRateLimited('new');
    clock.step(10_000);
    expect(q.len()).toBe(0);
    expect(await q.get()).toEqual({ shutdown: true });
    expect(q.isShuttingDown()).toBe(true);
  });

  it('after shutDown() keys already queued are still handed out (client-go semantics)', async () => {
    const q = newQueue();
    q.add('a');
    q.shutDown();
    expect(await q.get()).toEqual({ shutdown: false, key: 'a' });
    expect(await q.get()).toEqual({ shutdown: true });
  });

  it('shutDownWithDrain() resolves once every key handed out is done', async () => {
    const q = newQueue();
    q.add('a');
    q.add('b');
    const a = await getKey(q);
    const b = await getKey(q);
    let drained = false;
    const drain = q.shutDownWithDrain().then(() => (drained = true));
    await settle();
    expect(drained).toBe(false);
    q.done(a);
    await settle();
    expect(drained).toBe(false);
    q.done(b);
    await drain;
    expect(drained).toBe(true);
    await q.shutDownWithDrain(); // idle: resolves at once
  });

  it('shutDownWithDrain() also resolves when the last done() key was re-added meanwhile', async () => {
    const q = newQueue();
    q.add('a');
    const a = await getKey(q);
    q.add('a'); // dirty while processing
    const drain = q.shutDownWithDrain();
    q.done(a);
    await drain;
    expect(q.len()).toBe(1); // queued again, handed out only to a get() that still asks
  });

  it('records client-go workqueue metrics', async () => {
    const clock = new FakeClock();
    const { m, provider } = recordingProvider();
    const q = newQueue(clock, provider);
    expect(m.names).toEqual(new Set(['test']));
    q.add('a');
    q.add('a'); // deduped: not an add
    q.add('b');
    expect(m.adds).toBe(2);
    expect(m.depth).toBe(2);
    clock.step(250);
    const a = await getKey(q);
    expect(m.depth).toBe(1);
    expect(m.latency).toEqual([0.25]);
    clock.step(600); // the unfinished-work ticker ran at 500 ms
    expect(m.unfinished).toBeCloseTo(0.5);
    expect(m.longest).toBeCloseTo(0.5);
    const b = await getKey(q);
    expect(m.latency).toEqual([0.25, 0.85]);
    clock.step(400); // tick at 1000 ms after the first get: a has run 1.0 s, b 0.4 s
    expect(m.unfinished).toBeCloseTo(1.4);
    expect(m.longest).toBeCloseTo(1.0);
    q.done(a);
    q.done(b);
    expect(m.work).toEqual([1.0, 0.4]);
    expect(m.unfinished).toBe(0);
    expect(m.longest).toBe(0);
    expect(clock.pendingTimers()).toBe(0); // the ticker stops once nothing is processing
    q.addAfter('c', 10);
    q.addRateLimited('d');
    expect(m.retries).toBe(2);
    q.shutDown();
  });
});

describe('rate limiters', () => {
  it('per-item exponential: 5 ms doubling, capped at 1000 s, per key', () => {
    const rl = new ItemExponentialFailureRateLimiter<string>(5, 1_000_000);
    const delays = Array.from({ length: 20 }, () => rl.when('a'));
    expect(delays.slice(0, 5)).toEqual([5, 10, 20, 40, 80]);
    expect(delays[17]).toBe(655_360);
    expect(delays[18]).toBe(1_000_000);
    expect(delays[19]).toBe(1_000_000);
    expect(rl.when('b')).toBe(5);
    for (let i = 0; i < 2000; i++) rl.when('a');
    expect(rl.when('a')).toBe(1_000_000); // 2^2000 is Infinity; the cap still holds
    rl.forget('a');
    expect(rl.numRequeues('a')).toBe(0);
    expect(rl.when('a')).toBe(5);
  });

  it('token bucket: a burst of 100, then one token per 100 ms (10 qps)', () => {
    const clock = new FakeClock();
    const rl = new BucketRateLimiter<string>(10, 100, clock);
    for (let i = 0; i < 100; i++) expect(rl.when(`k${i}`)).toBe(0);
    expect(rl.when('x')).toBeCloseTo(100);
    expect(rl.when('y')).toBeCloseTo(200);
    clock.step(1000); // 10 tokens back, 2 were borrowed
    for (let i = 0; i < 8; i++) expect(rl.when(`z${i}`)).toBeCloseTo(0);
    expect(rl.when('w')).toBeCloseTo(100);
    clock.step(1_000_000);
    expect(rl.when('v')).toBe(0); // refills to the burst, not beyond
    expect(rl.numRequeues('v')).toBe(0);
  });

  it('the default controller limiter is the max of both', () => {
    const clock = new FakeClock();
    const rl = defaultControllerRateLimiter<string>(clock);
    expect(rl.when('a')).toBe(5);
    expect(rl.when('a')).toBe(10);
    for (let i = 0; i < 98; i++) rl.when(`k${i}`); // bucket now empty
    expect(rl.when('fresh')).toBeCloseTo(100); // bucket wins over 5 ms
    expect(rl.numRequeues('a')).toBe(2);
    rl.forget('a');
    expect(rl.numRequeues('a')).toBe(0);
  });

  it('MaxOf counts a failure in every limiter', () => {
    const a = new ItemExponentialFailureRateLimiter<string>(1, 1000);
    const b = new ItemExponentialFailureRateLimiter<string>(3, 1000);
    const rl = new MaxOfRateLimiter(a, b);
    expect(rl.when('k')).toBe(3);
    expect(a.numRequeues('k')).toBe(1);
    expect(b.numRequeues('k')).toBe(1);
  });
});
