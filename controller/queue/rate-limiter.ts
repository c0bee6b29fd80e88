/**
 * Rate limiters for requeueing failed keys, after client-go's workqueue/default_rate_limiters.go.
 * when(key) both answers "how long must this key wait" and records one more failure for it;
 * forget(key) ends its failure streak (call it once the key reconciled successfully).
 */
import type { Clock } from './clock.js';

export interface RateLimiter<K> {
  /** Delay in milliseconds before key may be retried; counts one more requeue. */
  when(key: K): number;
  /** Clears key's failure history. */
  forget(key: K): void;
  /** How many times key has been requeued since it was last forgotten. */
  numRequeues(key: K): number;
}

/** base * 2^failures, capped at max: 5 ms, 10 ms, 20 ms, ... 1000 s in the default. */
export class ItemExponentialFailureRateLimiter<K> implements RateLimiter<K> {
  private readonly failures = new Map<K, number>();

  constructor(
    private readonly baseDelayMs: number,
    private readonly maxDelayMs: number,
  ) {}

  when(key: K): number {
    const exp = this.failures.get(key) ?? 0;
    this.failures.set(key, exp + 1);
    // 2^exp overflows to Infinity long before it matters; the cap keeps the result finite.
    return Math.min(this.baseDelayMs * 2 ** exp, this.maxDelayMs);
  }

  forget(key: K): void {
    this.failures.delete(key);
  }

  numRequeues(key: K): number {
    return this.failures.get(key) ?? 0;
  }
}

/**
 * An overall token bucket (golang.org/x/time/rate semantics): `qps` tokens per second, at most
 * `burst` saved. Each when() reserves a token; when the bucket is empty the reservation is taken
 * from the future, so the n-th caller past the burst waits n/qps seconds. Not per key: it caps
 * the retry rate of the whole queue.
 */
export class BucketRateLimiter<K> implements RateLimiter<K> {
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly clock: Clock,
  ) {
    this.tokens = burst;
    this.last = clock.now();
  }

  when(_key: K): number {
    const now = this.clock.now();
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
      this.last = now;
    }
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }

  forget(_key: K): void {}

  numRequeues(_key: K): number {
    return 0;
  }
}

/** The longest delay any of its limiters asks for. */
export class MaxOfRateLimiter<K> implements RateLimiter<K> {
  private readonly limiters: RateLimiter<K>[];

  constructor(...limiters: RateLimiter<K>[]) {
    this.limiters = limiters;
  }

  when(key: K): number {
    // Every limiter must see the failure, so no short-circuit.
    return this.limiters.reduce((max, l) => Math.max(max, l.when(key)), 0);
  }

  forget(key: K): void {
    for (const l of this.limiters) l.forget(key);
  }

  numRequeues(key: K): number {
    return this.limiters.reduce((max, l) => Math.max(max, l.numRequeues(key)), 0);
  }
}

/**
 * client-go's DefaultTypedControllerRateLimiter: per-key exponential backoff from 5 ms to
 * 1000 s, bounded overall by 10 qps with a burst of 100.
 */
export function defaultControllerRateLimiter<K>(clock: Clock): RateLimiter<K> {
  return new MaxOfRateLimiter<K>(
    new ItemExponentialFailureRateLimiter<K>(5, 1000 * 1000),
    new BucketRateLimiter<K>(10, 100, clock),
  );
}
