import type { Clock } from '../clock.ts';
import type { DispatcherConfig } from '../config.ts';
import type { SchedulingEngine } from './engine.ts';
import type { DispatcherMetrics } from './metrics.ts';
import type { ScheduleMaterializer } from './schedules.ts';
import type { DispatcherStore } from './store.ts';
import type { TargetRegistry } from './targets.ts';

/** What the dispatcher's HTTP routes work with: changes go through the engine, reads straight to the store. */
export interface DispatcherContext {
  config: Readonly<DispatcherConfig>;
  store: DispatcherStore;
  engine: SchedulingEngine;
  metrics: DispatcherMetrics;
  clock: Clock;
  schedules: ScheduleMaterializer;
  /** The delivery targets (main servers) and their deliverers. */
  targets: TargetRegistry;
}
