/**
 * What the controller records about reconciles, with controller-runtime's meanings
 * (pkg/internal/controller/metrics); the metrics package implements it with prom-client.
 */
import type { ReconcileResultLabel } from './result.js';

export interface ReconcileMetrics {
  /** Registers a controller: sets max_concurrent_reconciles and zeroes its counters. */
  registerController(controller: string, maxConcurrentReconciles: number): void;
  /** controller_runtime_reconcile_total{controller,result}. */
  reconcileTotal(controller: string, result: ReconcileResultLabel): void;
  /** controller_runtime_reconcile_errors_total{controller}: retries and terminal errors. */
  reconcileError(controller: string): void;
  /** controller_runtime_terminal_reconcile_errors_total{controller}. */
  terminalReconcileError(controller: string): void;
  /** controller_runtime_reconcile_time_seconds{controller}. */
  reconcileTime(controller: string, seconds: number): void;
  /** controller_runtime_active_workers{controller}: +1 when a reconcile starts, -1 when it ends. */
  activeWorkers(controller: string, delta: 1 | -1): void;
}

const nothing = (): void => {};

export const noopReconcileMetrics: ReconcileMetrics = {
  registerController: nothing,
  reconcileTotal: nothing,
  reconcileError: nothing,
  terminalReconcileError: nothing,
  reconcileTime: nothing,
  activeWorkers: nothing,
};
