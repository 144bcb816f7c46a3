/**
 * Prometheus metrics (prom-client), one registry per process, served on GET /metrics. The use cases report
 * through small observer interfaces (SequencerObserver, PublishObserver) and never import prom-client; gauges
 * that need a broker or database round trip (intake lag, heads) are read only when scraped.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BatchStats, SequencerObserver } from "../app/ports.ts";

export type ScrapeProbes = {
  /** Messages on SEQUENCE not yet delivered to the sequencer, and delivered but unacked. */
  intakeLag?: () => Promise<{ pending: number; ackPending: number }>;
  tradingHead?: () => Promise<bigint>;
  databaseHead?: () => Promise<bigint>;
  isLeader?: () => boolean;
};

export class Metrics implements SequencerObserver {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests by route, method and status",
    labelNames: ["route", "method", "status"] as const,
    registers: [this.registry],
  });
  private readonly requestSeconds = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request latency by route",
    labelNames: ["route", "method"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly publishSeconds = new Histogram({
    name: "intake_publish_duration_seconds",
    help: "Time from publish to PubAck on SEQUENCE",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [this.registry],
  });
  private readonly batchSize = new Histogram({
    name: "sequencer_batch_size",
    help: "Messages per sequenced batch",
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
    registers: [this.registry],
  });
  private readonly transactionSeconds = new Histogram({
    name: "sequencer_transaction_duration_seconds",
    help: "Time from sending a batch's append statement to its commit (includes waiting behind the previous batch's)",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [this.registry],
  });
  private readonly sequenced = new Counter({
    name: "sequencer_events_total",
    help: "Events given a sequenceId",
    registers: [this.registry],
  });
  private readonly duplicates = new Counter({
    name: "sequencer_duplicates_total",
    help: "Intake messages dropped as already sequenced (same referenceId or idempotency key)",
    registers: [this.registry],
  });
  private readonly rejected = new Counter({
    name: "sequencer_rejected_total",
    help: "Intake messages that were not valid events (recorded in rejected_messages)",
    registers: [this.registry],
  });
  private readonly republished = new Counter({
    name: "sequencer_republished_total",
    help: "Events republished to TRADING by catch-up",
    registers: [this.registry],
  });
  private readonly redeliveredTotal = new Counter({
    name: "sequencer_redelivered_total",
    help: "Intake messages the broker delivered to this process's sequencer again (ack_wait ran out or a nak)",
    registers: [this.registry],
  });
  private readonly rateLimitedTotal = new Counter({
    name: "http_rate_limited_total",
    help: "Requests answered 429 (limit=user: RATE_LIMIT per user; auth_failures: AUTH_FAILURE_LIMIT per client IP)",
    labelNames: ["limit"] as const,
    registers: [this.registry],
  });
  private readonly refusedTotal = new Counter({
    name: "http_refused_total",
    help: "Refused requests audited as security events, by kind (unauthenticated 401, forbidden 403, rate_limited 429)",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  private readonly overloadedTotal = new Counter({
    name: "http_overloaded_total",
    help: "Requests answered 503 because MAX_IN_FLIGHT requests were already in progress",
    registers: [this.registry],
  });
  private readonly tradingMismatchGauge = new Gauge({
    name: "sequencer_trading_mismatch",
    help: "1 while this process's sequencer has stopped because TRADING differs from the log (the error log names the sequenceId)",
    registers: [this.registry],
  });

  constructor(probes: ScrapeProbes = {}) {
    // Not collectDefaultMetrics(): under Bun its heap-space gauges walk the heap and stall the event loop for
    // 30-250 ms per scrape (docs/performance.md). These two come from process.memoryUsage() and cost nothing.
    new Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory of this process",
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage().rss);
      },
    });
    new Gauge({
      name: "process_heap_used_bytes",
      help: "JavaScript heap in use",
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage().heapUsed);
      },
    });
    const { intakeLag, tradingHead, databaseHead, isLeader } = probes;
    if (intakeLag) {
      new Gauge({
        name: "intake_lag_messages",
        help: "SEQUENCE messages waiting for the sequencer (state=pending: not delivered; ack_pending: unacked)",
        labelNames: ["state"] as const,
        registers: [this.registry],
        async collect() {
          const lag = await intakeLag().catch(() => null);
          if (!lag) return;
          this.set({ state: "pending" }, lag.pending);
          this.set({ state: "ack_pending" }, lag.ackPending);
        },
      });
    }
    if (tradingHead && databaseHead) {
      new Gauge({
        name: "sequence_head",
        help: "Last sequenceId in the database (store=database) and last position on TRADING (store=trading)",
        labelNames: ["store"] as const,
        registers: [this.registry],
        async collect() {
          const [db, trading] = await Promise.all([
            databaseHead().catch(() => null),
            tradingHead().catch(() => null),
          ]);
          if (db !== null) this.set({ store: "database" }, Number(db));
          if (trading !== null) this.set({ store: "trading" }, Number(trading));
        },
      });
    }
    if (isLeader) {
      new Gauge({
        name: "sequencer_leader",
        help: "1 while this process holds the writer lock",
        registers: [this.registry],
        collect() {
          this.set(isLeader() ? 1 : 0);
        },
      });
    }
  }

  request(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.requestSeconds.observe({ route, method }, seconds);
  }

  rateLimited(limit: "user" | "auth_failures"): void {
    this.rateLimitedTotal.inc({ limit });
  }

  refused(kind: "unauthenticated" | "forbidden" | "rate_limited"): void {
    this.refusedTotal.inc({ kind });
  }

  overloaded(): void {
    this.overloadedTotal.inc();
  }

  batch(stats: BatchStats): void {
    this.batchSize.observe(stats.size);
    this.transactionSeconds.observe(stats.transactionMs / 1000);
    this.sequenced.inc(stats.sequenced);
    this.duplicates.inc(stats.duplicates);
    this.rejected.inc(stats.rejected);
  }

  /** One intake message delivered again by the broker (JsMsg.info.redelivered). */
  redelivered(): void {
    this.redeliveredTotal.inc();
  }

  /** sequencer_redelivered_total as it stands (the status page's redeliveries). */
  async redeliveries(): Promise<number> {
    return sumOf(await this.redeliveredTotal.get());
  }

  /** Requests this process answered 202 (accepted into SEQUENCE), over every route: the status page's in rate. */
  async accepted(): Promise<number> {
    const { values } = await this.requests.get();
    return sumOf({ values: values.filter((v) => v.labels.status === "202") });
  }

  catchUp(count: number): void {
    this.republished.inc(count);
  }

  tradingMismatch(sequenceId: bigint | null): void {
    this.tradingMismatchGauge.set(sequenceId === null ? 0 : 1);
  }
}

function sumOf(metric: { values: readonly { value: number }[] }): number {
  return metric.values.reduce((sum, v) => sum + v.value, 0);
}
