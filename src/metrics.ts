import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * Both services' /metrics: a prom-client registry per service instance (tests
 * run several in one process), with the process and runtime metrics every
 * Node service exports (CPU, memory, heap, event-loop delay, GC), under their
 * standard names so stock dashboards find them.
 */
export function serviceRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  return registry;
}
