/**
 * Where each message an owner holds is in the engine's pipeline, counted in
 * one place. Capacity (how much more to claim), idleness (whenIdle), quiet
 * (what stop() waits for) and sweeps (the legacy cron waits for everything
 * under way) each used to sum their own hand-picked list of fields, so a new
 * stage could silently be left out of one. Here a stage is a name in STAGES
 * with a view of its collection; the record type makes leaving one out a
 * type error, and the questions are asked of groups of stages.
 */
export const STAGES = [
  /** claimed, in the due-time heap */
  'buffered',
  /** claimed and due, parked until their target has room (flow control) */
  'throttled',
  /** handed to startDelivery, waiting for its answer */
  'starting',
  /** started ahead of their due time (a slow store), waiting for it */
  'early',
  /** started and due, waiting for a delivery slot */
  'ready',
  /** sent, waiting for the receiver's answer */
  'inFlight',
  /** answered, the outcome waiting to be written */
  'pending',
  /** the outcome batch being written */
  'writing',
  /** promised to schedule() calls whose insert has not resolved */
  'reserved',
] as const;

export type Stage = (typeof STAGES)[number];

export interface StageView {
  count(): number;
  /** The ids it holds (reserved messages have none yet). */
  ids(): Iterable<string>;
}

/** Stages in which work is under way that will settle by itself (no timer needed). */
const UNDER_WAY: readonly Stage[] = ['starting', 'inFlight', 'writing'];
/** Stages that hold started messages: everything but the heap and reservations. */
const STARTED: readonly Stage[] = ['starting', 'early', 'ready', 'inFlight', 'pending', 'writing'];

export class Holdings {
  readonly #views: Record<Stage, StageView>;

  constructor(views: Record<Stage, StageView>) {
    this.#views = views;
  }

  count(...stages: Stage[]): number {
    let total = 0;
    for (const stage of stages) total += this.#views[stage].count();
    return total;
  }

  /** Every message held, wherever it is: what the capacity cap bounds. */
  get total(): number {
    return this.count(...STAGES);
  }

  /** Nothing started is waiting anywhere: the heap alone may hold messages. */
  get nothingStarted(): boolean {
    return this.count(...STARTED) === 0;
  }

  /** No store call or delivery is under way: what stop() waits for before recording and releasing. */
  get quiet(): boolean {
    return this.count(...UNDER_WAY) === 0;
  }

  /** The ids of every started message: what a sweep waits for besides the due part of the heap. */
  *startedIds(): Iterable<string> {
    for (const stage of STARTED) yield* this.#views[stage].ids();
  }
}
