import { describe, expect, it } from '@jest/globals';

import {
  backoffDelay,
  CrashLoopBackOff,
  KUBELET_BACKOFF,
  shouldRestart,
} from '../../controller/controllers/restart-policy.js';
import { TestClock } from '../fixtures/fakes.js';

describe('restart policy', () => {
  it('restarts as restartPolicy says', () => {
    expect(shouldRestart('Always', 0)).toBe(true);
    expect(shouldRestart('Always', 1)).toBe(true);
    expect(shouldRestart('OnFailure', 0)).toBe(false);
    expect(shouldRestart('OnFailure', 137)).toBe(true);
    expect(shouldRestart('Never', 1)).toBe(false);
  });

  it('backs off as the kubelet does: 10 s doubling to 5 min', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 10].map((n) => backoffDelay(n) / 1000)).toEqual([
      10, 20, 40, 80, 160, 300, 300, 300,
    ]);
  });
});

describe('CrashLoopBackOff (fake clock)', () => {
  const t = (clock: TestClock): number => clock.now().getTime();

  it('waits out each back-off before a restart, and each crash doubles the next', () => {
    const clock = new TestClock();
    const b = new CrashLoopBackOff(KUBELET_BACKOFF, () => t(clock));
    const run = { startedAtMs: t(clock) - 1000, finishedAtMs: t(clock) };
    expect(b.exited('ns/web', run)).toEqual({ restart: false, waitMs: 10_000, delayMs: 10_000 });
    clock.advance(4_000);
    expect(b.exited('ns/web', run)).toEqual({ restart: false, waitMs: 6_000, delayMs: 10_000 });
    clock.advance(6_000);
    expect(b.exited('ns/web', run)).toEqual({ restart: true });
    expect(b.streak('ns/web')).toBe(1);
    // It crashes again at once: 20 s now.
    const second = { startedAtMs: t(clock), finishedAtMs: t(clock) + 500 };
    clock.advance(500);
    expect(b.exited('ns/web', second)).toMatchObject({ restart: false, delayMs: 20_000 });
    // Another key has its own streak.
    expect(b.streak('ns/other')).toBe(0);
  });

  it('ends the streak after a run of 10 minutes, and says when to look again while running', () => {
    const clock = new TestClock();
    const b = new CrashLoopBackOff(KUBELET_BACKOFF, () => t(clock));
    clock.advance(10_000);
    expect(b.exited('k', { finishedAtMs: t(clock) - 10_000 })).toEqual({ restart: true });
    expect(b.exited('k', { finishedAtMs: t(clock) - 20_000 })).toEqual({ restart: true });
    expect(b.streak('k')).toBe(2);
    const started = t(clock);
    clock.advance(60_000);
    expect(b.running('k', started)).toBe(540_000);
    clock.advance(540_000);
    expect(b.running('k', started)).toBeUndefined();
    expect(b.streak('k')).toBe(0);
    // A long run before an exit ends the streak too: the next wait is 10 s again.
    b.exited('k', { finishedAtMs: t(clock) - 20_000 });
    expect(b.streak('k')).toBe(1);
    const long = { startedAtMs: t(clock) - 700_000, finishedAtMs: t(clock) };
    expect(b.exited('k', long)).toMatchObject({ restart: false, delayMs: 10_000 });
    b.forget('k');
    expect(b.running('k', t(clock))).toBeUndefined();
  });
});
