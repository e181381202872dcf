import { Counter, Gauge, type Registry } from 'prom-client';
import { serviceRegistry } from '../metrics.ts';

/**
 * The main server's /metrics (prom-client): posts taken, redeliveries
 * answered from the feed, open event streams, and the process and runtime
 * metrics (../metrics.ts).
 */
export class MainMetrics {
  readonly registry: Registry = serviceRegistry();
  readonly #posts = new Counter({
    name: 'psched_posts_total',
    help: 'Posts received, by how they came (a signed delivery or the original\'s postMessage.php) and whether they were new or a redelivery of one in the feed.',
    labelNames: ['via', 'result'],
    registers: [this.registry],
  });

  constructor(openStreams: () => number) {
    for (const via of ['delivery', 'legacy']) for (const result of ['created', 'duplicate']) this.#posts.inc({ via, result }, 0);
    new Gauge({
      name: 'psched_event_streams',
      help: 'Pages (and other clients) connected to the live feed.',
      registers: [this.registry],
      collect() {
        this.set(openStreams());
      },
    });
  }

  recordPost(via: 'delivery' | 'legacy', created: boolean): void {
    this.#posts.inc({ via, result: created ? 'created' : 'duplicate' });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
