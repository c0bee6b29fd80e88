export { Controller, type ControllerLogger, type ControllerOptions } from './controller.js';
export { DisposableStore, type Disposable } from './lifecycle.js';
export { noopReconcileMetrics, type ReconcileMetrics } from './metrics.js';
export {
  done,
  reconcileResultLabels,
  requeueAfter,
  retry,
  terminal,
  TerminalError,
  type ReconcileResultLabel,
  type Reconciler,
  type Result,
} from './result.js';
