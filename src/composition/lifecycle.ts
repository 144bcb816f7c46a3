/**
 * What a composition started, to be stopped in reverse order: the last thing started depends on the earlier ones
 * (the HTTP servers on the roles, the roles on the connections and the database), so it goes first. Each stop is
 * bounded and its failure logged, so one that hangs or throws never keeps the others (the database, the embedded
 * broker) from being stopped.
 */
import type { Logger } from "../logger.ts";

/** How long one stop may take by default before the next one runs anyway. */
export const STOP_STEP_MS = 10_000;

type Step = { name: string; stop: () => Promise<unknown> | undefined; timeoutMs: number };

export class Lifecycle {
  private readonly steps: Step[] = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  /** Registers `stop` to run, within `timeoutMs`, before everything registered earlier. */
  onStop(name: string, stop: () => Promise<unknown> | undefined, timeoutMs = STOP_STEP_MS): void {
    this.steps.push({ name, stop, timeoutMs });
  }

  /** Runs every registered stop once, last registered first; later calls get the same promise. Never rejects. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const step of [...this.steps].reverse()) await this.run(step);
    })();
    return this.stopping;
  }

  private async run(step: Step): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), step.timeoutMs);
    });
    try {
      const outcome = await Promise.race([Promise.resolve().then(step.stop), timedOut]);
      if (outcome === "timeout") {
        this.log.warn(`stopping ${step.name} took too long; going on`, { timeoutMs: step.timeoutMs });
      }
    } catch (error) {
      this.log.warn(`stopping ${step.name} failed`, { error });
    } finally {
      clearTimeout(timer);
    }
  }
}
