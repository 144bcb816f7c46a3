/**
 * The live status page of the ops listener: GET /status (one self-contained HTML page) and GET /status.json (its
 * figures, polled by the page every second). Only on the ops listener (OPS_HOST:OPS_PORT, loopback by default),
 * like /metrics and the detailed /readyz: whoever can reach that listener may read it, nobody else can (the public
 * port has no such route). The page loads nothing from anywhere else, and its Content-Security-Policy says so.
 *
 * The figures are computed here, from readings the sampler takes once a second while somebody is looking (and for
 * a while after, so that the history is there when the page is reopened); nobody looking costs nothing.
 */
import { randomBytes } from "node:crypto";
import { Elysia } from "elysia";
import {
  type IntakeReading,
  type SequencerReading,
  type StatusReading,
  type StatusSnapshot,
  StatusTracker,
  type StatusTrackerOptions,
  type WriterReading,
} from "../../app/status.ts";
import type { Logger } from "../../logger.ts";
import type { ReadinessCheck } from "./ops.ts";
import { renderStatusPage } from "./status-page-html.ts";

/** Where each figure comes from (src/service.ts wires them); a probe that fails or is too slow reads as unknown. */
export type StatusProbes = {
  intake: () => Promise<IntakeReading>;
  databaseHead: () => Promise<bigint>;
  tradingHead: () => Promise<bigint>;
  /** The writer_lease row; null when there is none (the embedded database has no lease row). */
  writer: () => Promise<WriterReading | null>;
  readiness: ReadinessCheck;
  /** Only in a process that serves the API. */
  accepted?: () => Promise<number>;
  /** Only in a process that runs a sequencer. */
  sequencer?: () => Promise<SequencerReading>;
};

export type StatusSamplerOptions = StatusTrackerOptions & {
  intervalMs?: number;
  /** Sampling stops this long after the last request for the figures. */
  idleStopMs?: number;
  /** A probe that has not answered in this long reads as unknown for this reading. */
  probeTimeoutMs?: number;
  now?: () => number;
};

export class StatusSampler {
  private readonly tracker: StatusTracker;
  private readonly intervalMs: number;
  private readonly idleStopMs: number;
  private readonly probeTimeoutMs: number;
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private inFlight: Promise<void> | null = null;
  private lastViewed = 0;
  private readings = 0;
  private stopped = false;

  constructor(
    private readonly probes: StatusProbes,
    private readonly log: Logger,
    options: StatusSamplerOptions = {},
  ) {
    this.tracker = new StatusTracker(options);
    this.intervalMs = options.intervalMs ?? 1_000;
    this.idleStopMs = options.idleStopMs ?? 300_000;
    this.probeTimeoutMs = options.probeTimeoutMs ?? 2_000;
    this.now = options.now ?? Date.now;
  }

  /** The current figures; starts sampling when it was idle (the first answer waits for one reading). */
  async snapshot(): Promise<StatusSnapshot> {
    this.lastViewed = this.now();
    if (!this.stopped && this.timer === null) {
      // unref: a status page nobody closed must not keep a stopping process alive.
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      this.timer.unref?.();
    }
    if (this.readings === 0) await this.sample();
    return this.tracker.snapshot(this.now());
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    if (this.now() - this.lastViewed > this.idleStopMs) {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
      return;
    }
    // A reading still waiting on a slow probe is not doubled up; the next tick tries again.
    if (this.inFlight === null) void this.sample();
  }

  private sample(): Promise<void> {
    this.inFlight ??= this.read()
      .then((reading) => {
        this.readings += 1;
        this.tracker.record(reading);
      })
      .catch((error: unknown) => this.log.warn("status page reading failed", { error }))
      .finally(() => {
        this.inFlight = null;
      });
    return this.inFlight;
  }

  private async read(): Promise<StatusReading> {
    const p = this.probes;
    const [intake, databaseHead, tradingHead, writer, checks, accepted, sequencer] = await Promise.all([
      this.settle(p.intake()),
      this.settle(p.databaseHead()),
      this.settle(p.tradingHead()),
      this.settle(p.writer()),
      this.settle(p.readiness()),
      p.accepted ? this.settle(p.accepted()) : null,
      p.sequencer ? this.settle(p.sequencer()) : null,
    ]);
    return {
      at: this.now(),
      intake,
      databaseHead,
      tradingHead,
      writer,
      accepted,
      sequencer,
      checks: checks ?? { status: { ok: false, detail: "readiness did not answer in time" } },
    };
  }

  /** The probe's value; null when it failed or took longer than probeTimeoutMs. */
  private async settle<T>(probe: Promise<T>): Promise<T | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), this.probeTimeoutMs);
    });
    try {
      return await Promise.race([probe.catch(() => null), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Headers of both routes: never cached, never sniffed into something else, never framed. */
const COMMON_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/**
 * The page's policy: its own inline script and style by this response's nonce, requests only to this origin, and
 * nothing else (no images, fonts, frames, forms, plugins, base URL).
 */
export function statusPagePolicy(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    "connect-src 'self'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** GET /status and GET /status.json: mounted on the ops listener only (createOpsApp). */
export function statusPageModule(sampler: StatusSampler) {
  return new Elysia({ name: "status-page" })
    .get("/status", () => {
      const nonce = randomBytes(16).toString("base64");
      return new Response(renderStatusPage(nonce), {
        headers: {
          ...COMMON_HEADERS,
          "content-type": "text/html; charset=utf-8",
          "content-security-policy": statusPagePolicy(nonce),
        },
      });
    })
    .get(
      "/status.json",
      async () =>
        new Response(JSON.stringify(await sampler.snapshot()), {
          headers: {
            ...COMMON_HEADERS,
            "content-type": "application/json",
            "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
          },
        }),
    );
}
