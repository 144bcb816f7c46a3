/**
 * A batch's life in the sequencer's pipeline (./sequencer.ts), as one state: from when it is taken until it is
 * released. And the wait for messages that spans loop turns.
 */
import type { IntakeMessage } from "./ports.ts";

/** What a batch stores: the filters of later batches count these as stored until it is out of the pipeline. */
export type Stores = { references: ReadonlySet<bigint>; idempotencyKeys: ReadonlySet<string> };

const NOTHING_STORED: Stores = { references: new Set(), idempotencyKeys: new Set() };

/**
 * Where a batch in the pipeline is: running (its append, publish or ack still under way), finished (committed,
 * published and acked), failed (something of that failed), or not started (taken, but its filter read failed or
 * an earlier batch had failed: nothing of it ran). Failed and not-started batches are redone.
 */
type StageState =
  | { kind: "running" }
  | { kind: "finished" }
  | { kind: "failed"; error: unknown }
  | { kind: "not-started" };

/** A batch in the pipeline, from when it is taken until it is released. */
export class BatchStage {
  private state: StageState;
  /** Resolves (never rejects) once nothing of ours runs for the batch any more. */
  readonly settled: Promise<void>;

  private constructor(
    readonly batch: readonly IntakeMessage[],
    /** Stops the batch's keep-alive; once it is out of the pipeline. */
    readonly release: () => void,
    readonly stores: Stores,
    /** Resolves once committed, published and acked; rejects if any of that failed. */
    readonly done: Promise<void> | null,
  ) {
    this.state = done ? { kind: "running" } : { kind: "not-started" };
    this.settled = done
      ? done.then(
          () => {
            this.state = { kind: "finished" };
          },
          (error: unknown) => {
            this.state = { kind: "failed", error };
          },
        )
      : Promise.resolve();
  }

  static launched(batch: readonly IntakeMessage[], release: () => void, stores: Stores, done: Promise<void>) {
    return new BatchStage(batch, release, stores, done);
  }

  static notStarted(batch: readonly IntakeMessage[], release: () => void) {
    return new BatchStage(batch, release, NOTHING_STORED, null);
  }

  get finished(): boolean {
    return this.state.kind === "finished";
  }

  get needsRedo(): boolean {
    return this.state.kind === "failed" || this.state.kind === "not-started";
  }
}

/** A batch that committed but cannot be published because an earlier one failed; it is redone with it. */
export class PreviousBatchFailed extends Error {
  override readonly name = "PreviousBatchFailed";
}

/** A wait for messages that may outlast a loop turn: messages taken are kept for the next turn, never dropped. */
export class Take {
  private taken: IntakeMessage[] | null = null;
  readonly arrived: Promise<void>;
  constructor(next: Promise<IntakeMessage[]>) {
    this.arrived = next.then((batch) => {
      this.taken = batch;
    });
  }
  get batch(): IntakeMessage[] | null {
    return this.taken;
  }
}
