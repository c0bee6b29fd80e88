/**
 * What a reconcile concluded, as a type rather than a convention. controller-runtime
 * (pkg/reconcile/reconcile.go) sorts outcomes into three kinds besides success; so do we:
 *
 * - `done`: converged; the key's backoff streak ends.
 * - `requeueAfter`: converged for now, look again in afterMs (e.g. a restart backoff expiring,
 *   a probe period). Not an error.
 * - `retry`: failed in a way that may pass (the runtime was busy, a dependency is not ready):
 *   requeued with per-key exponential backoff.
 * - `terminal`: failed in a way that retrying cannot fix (an invalid spec): the reconciler
 *   records it in status, the controller counts it, and the key is not retried until something
 *   changes and enqueues it again.
 */
export type Result =
  | { kind: 'done' }
  | { kind: 'requeueAfter'; afterMs: number }
  | { kind: 'retry'; error: Error }
  | { kind: 'terminal'; error: Error };

/**
 * An error no retry can fix (an invalid spec), carrying the reason status reports (the
 * Kubernetes reason: InvalidSpec, BuildFailed). Returned as `terminal(err)` or thrown: the
 * controller treats a thrown TerminalError as a terminal result, any other throw as a retry.
 */
export class TerminalError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export const done = (): Result => ({ kind: 'done' });
export const requeueAfter = (afterMs: number): Result => ({ kind: 'requeueAfter', afterMs });
export const retry = (error: Error): Result => ({ kind: 'retry', error });
export const terminal = (error: Error): Result => ({ kind: 'terminal', error });

/**
 * A reconciler makes the world match the desired state of the object named by key. It is
 * level-triggered: it is told which object, never what changed, so it reads the current desired
 * state (the cache) and the actual state (the runtime) every time, and running it twice, or
 * after a crash, converges to the same place. The signal aborts when the controller stops: long
 * waits should end early; short steps may finish.
 */
export interface Reconciler<K = string> {
  reconcile(key: K, signal: AbortSignal): Promise<Result>;
}

/** controller_runtime_reconcile_total's `result` label values. */
export type ReconcileResultLabel = 'success' | 'error' | 'requeue' | 'requeue_after';
export const reconcileResultLabels: readonly ReconcileResultLabel[] = [
  'success',
  'error',
  'requeue',
  'requeue_after',
];
