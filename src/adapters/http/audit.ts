/**
 * Refused requests (401, 403, 429) as security events, aggregated: at most one warning line per interval with
 * the counts by kind and the few top offenders (user ids, or client IPs when there is no valid token), so a flood
 * of refusals cannot flood the log. Offenders are ids and addresses only, never a token or a header.
 * The timer runs only while there is something to report (none on an idle service).
 */
import type { Logger } from "../../logger.ts";

export type RefusalKind = "unauthenticated" | "forbidden" | "rate_limited";

/** Distinct offenders counted one by one in an interval; beyond, they are summed as "(others)". */
const MAX_OFFENDERS = 10_000;
const TOP = 5;

export class SecurityAudit {
  private counts: Record<RefusalKind, number> = { unauthenticated: 0, forbidden: 0, rate_limited: 0 };
  private offenders = new Map<string, number>();
  private others = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly onRefusal: (kind: RefusalKind) => void = () => {},
  ) {}

  /** `offender`: "user:<id>" or "ip:<address>". */
  record(kind: RefusalKind, offender: string): void {
    this.onRefusal(kind);
    this.counts[kind]++;
    const seen = this.offenders.get(offender);
    if (seen !== undefined) this.offenders.set(offender, seen + 1);
    else if (this.offenders.size < MAX_OFFENDERS) this.offenders.set(offender, 1);
    else this.others++;
    if (!this.timer) {
      this.timer = setInterval(() => this.flush(), this.intervalMs);
      (this.timer as { unref?: () => void }).unref?.();
    }
  }

  /** Writes the interval's line (if anything was refused) and starts a new interval. */
  flush(): void {
    const total = this.counts.unauthenticated + this.counts.forbidden + this.counts.rate_limited;
    if (total === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const top = [...this.offenders.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP)
      .map(([offender, count]) => ({ offender, count }));
    this.log.warn("requests refused (aggregated)", {
      security: true,
      intervalSeconds: this.intervalMs / 1000,
      total,
      counts: { ...this.counts },
      top,
      distinctOffenders: this.offenders.size + (this.others > 0 ? 1 : 0),
      ...(this.others > 0 ? { othersCount: this.others } : {}),
    });
    this.counts = { unauthenticated: 0, forbidden: 0, rate_limited: 0 };
    this.offenders = new Map();
    this.others = 0;
  }

  stop(): void {
    this.flush();
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
