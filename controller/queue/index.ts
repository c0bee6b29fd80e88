export { FakeClock, realClock, type Clock, type Timer } from './clock.js';
export {
  noopQueueMetricsProvider,
  type CounterMetric,
  type GaugeMetric,
  type HistogramMetric,
  type QueueMetricsProvider,
  type SettableGaugeMetric,
} from './metrics.js';
export { WorkQueue, type GetResult, type WorkQueueOptions } from './queue.js';
export {
  BucketRateLimiter,
  defaultControllerRateLimiter,
  ItemExponentialFailureRateLimiter,
  MaxOfRateLimiter,
  type RateLimiter,
} from './rate-limiter.js';
