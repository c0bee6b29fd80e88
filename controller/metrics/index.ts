export { ConductorMetrics, type ConductorMetricsOptions } from './registry.js';
export {
  DEFAULT_METRICS_ADDR,
  MetricsServer,
  parseAddr,
  type HostPort,
  type MetricsServerOptions,
} from './server.js';
