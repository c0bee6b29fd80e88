/**
 * The time source the queue, its rate limiters and the controller read, injected so that unit
 * tests drive backoff with a fake clock instead of sleeping (as client-go injects
 * k8s.io/utils/clock).
 */

/** A scheduled callback; cancel() is idempotent and safe after it fired. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale: only differences are meaningful. */
  now(): number;
  /** Calls fn once after ms milliseconds (ms <= 0: on the next turn). */
  setTimer(fn: () => void, ms: number): Timer;
}

/**
 * The real clock: performance.now() and setTimeout. Timers are unref'd: whoever schedules them
 * owns them and cancels them on shutdown, and a forgotten one never keeps the process alive.
 */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    let handle: NodeJS.Timeout;
    const arm = (remaining: number): void => {
      // setTimeout fires after 1 ms for delays past 2^31-1 ms (~24.8 days): re-arm in steps.
      const step = Math.min(Math.max(0, remaining), MAX_TIMEOUT_MS);
      handle = setTimeout(() => (remaining > step ? arm(remaining - step) : fn()), step);
      handle.unref();
    };
    arm(ms);
    return { cancel: () => clearTimeout(handle) };
  },
};

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

interface FakeTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that moves only when told to. step(ms) fires every timer that falls due, in due-time
 * order, with now() set to each timer's due time while it runs (timers scheduled by a firing
 * timer fire in the same step if they fall due within it).
 */
export class FakeClock implements Clock {
  private current: number;
  private seq = 0;
  private readonly timers = new Set<FakeTimer>();

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const timer: FakeTimer = { at: this.current + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }

  /** Number of timers scheduled and not yet fired or cancelled. */
  pendingTimers(): number {
    return this.timers.size;
  }

  step(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const t of this.timers) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = t;
        }
      }
      if (!next) break;
      this.timers.delete(next);
      this.current = Math.max(this.current, next.at);
      next.fn();
    }
    this.current = target;
  }
}
