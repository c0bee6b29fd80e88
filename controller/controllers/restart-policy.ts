/**
 * A Container's restartPolicy and the kubelet's CrashLoopBackOff: whether an exited container
 * is started again, and when. Not the work queue's retry back-off (queue/rate-limiter.ts), which
 * paces failed reconciles: this one paces restarts of a container that keeps exiting.
 *
 * The kubelet's rule: the first restart waits 10 s, each one after a crash doubles it up to
 * 5 min, and a container that ran 10 min ends the streak (the next crash waits 10 s again).
 */
import type { RestartPolicy } from '../api/index.js';

export interface RestartBackoff {
  initialMs: number;
  maxMs: number;
  /** A run at least this long ends the crash streak. */
  resetMs: number;
}

export const KUBELET_BACKOFF: RestartBackoff = {
  initialMs: 10_000,
  maxMs: 300_000,
  resetMs: 600_000,
};

/** The wait before restart number `streak + 1` of a crash streak. */
export function backoffDelay(streak: number, b: RestartBackoff = KUBELET_BACKOFF): number {
  return Math.min(b.initialMs * 2 ** Math.max(0, streak), b.maxMs);
}

/** Whether restartPolicy starts a container that exited with `exitCode` again. */
export function shouldRestart(policy: RestartPolicy, exitCode: number): boolean {
  return policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
}

export type RestartDecision =
  /** Start it again now; the streak has grown by one. */
  | { restart: true }
  /** In back-off: look again in waitMs (of a delayMs back-off). */
  | { restart: false; waitMs: number; delayMs: number };

/** The crash streaks of the containers one reconciler restarts, by key. */
export class CrashLoopBackOff {
  private readonly streaks = new Map<string, number>();

  constructor(
    readonly timing: RestartBackoff = KUBELET_BACKOFF,
    /** Milliseconds since the epoch (a fake clock in tests). */
    private readonly now: () => number = Date.now,
  ) {}

  /** Restarts in the current streak (0: none, or the last run was long enough). */
  streak(key: string): number {
    return this.streaks.get(key) ?? 0;
  }

  /**
   * A container running since `startedAtMs`: a long enough run ends its streak. Returns when to
   * look again so the streak ends on time (ms from now), or undefined when there is no streak.
   */
  running(key: string, startedAtMs: number): number | undefined {
    const ranFor = this.now() - startedAtMs;
    if (ranFor >= this.timing.resetMs) this.streaks.delete(key);
    return this.streaks.has(key) ? this.timing.resetMs - ranFor : undefined;
  }

  /** A container that exited and whose policy restarts it: now, or after its back-off. */
  exited(key: string, run: { startedAtMs?: number; finishedAtMs?: number }): RestartDecision {
    const ranFor =
      run.startedAtMs !== undefined && run.finishedAtMs !== undefined
        ? run.finishedAtMs - run.startedAtMs
        : 0;
    if (ranFor >= this.timing.resetMs) this.streaks.delete(key);
    const streak = this.streak(key);
    const delayMs = backoffDelay(streak, this.timing);
    const waitMs = (run.finishedAtMs ?? this.now()) + delayMs - this.now();
    if (waitMs > 0) return { restart: false, waitMs, delayMs };
    this.streaks.set(key, streak + 1);
    return { restart: true };
  }

  /** The container was replaced or its owner is gone: a new one starts without a streak. */
  forget(key: string): void {
    this.streaks.delete(key);
  }
}
