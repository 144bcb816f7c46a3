/**
 * The figures of the ops listener's status page (GET /status, /status.json): readings of what the process already
 * measures, taken about once a second, turned into rates, a short history and a verdict. Pure: readings in, a
 * snapshot out (the sampler that takes the readings is src/adapters/http/status-page.ts).
 *
 * STALLED means work waits and nothing moves: the intake lag has stayed above zero and the database head has not
 * changed for longer than `stallAfterMs`, or TRADING has stayed behind the database that long. Both conditions
 * must hold over the whole span, so one reading that catches a fresh order before it is sequenced is no stall.
 */

/** This process's sequencer, when it runs one. */
export type SequencerReading = {
  /** Holds the writer lease now. */
  leader: boolean;
  /** The writer lease's own words (WriterLease.describe()): "holds the writer lease (term 3)", "standby; …". */
  lease: string;
  /** The sequencer's current error (cleared by its next good batch); null also when it is not sequencing. */
  error: string | null;
  /** Intake messages the broker delivered to this process again, since it started. */
  redelivered: number;
};

/**
 * The writer_lease row: who writes, cluster-wide, whichever process looks; and every sequencer process connected
 * to the database (leader and standbys, by holder name), oldest first.
 */
export type WriterReading = { holder: string; term: bigint; live: boolean; sequencers: string[] };

export type IntakeReading = {
  /** On SEQUENCE, not yet delivered to the sequencer. */
  pending: number;
  /** Delivered and not acked. */
  ackPending: number;
  /** Of those, delivered more than once (the consumer's num_redelivered). */
  redeliveredUnacked: number;
  /** SEQUENCE's last stream sequence: every message any API stored there (its rate is the in rate). */
  stored: number;
};

export type CheckResult = { ok: boolean; detail?: string };

/** One reading; null where a probe failed or timed out, or the figure does not exist in this process. */
export type StatusReading = {
  /** Epoch milliseconds. */
  at: number;
  intake: IntakeReading | null;
  databaseHead: bigint | null;
  tradingHead: bigint | null;
  /** Requests this process answered 202, since it started; null when it serves no API. */
  accepted: number | null;
  /** null when this process runs no sequencer. */
  sequencer: SequencerReading | null;
  writer: WriterReading | null;
  checks: Record<string, CheckResult>;
};

export type StatusState = "ok" | "stalled" | "unknown";

export type HistoryPoint = {
  /** Epoch milliseconds. */
  at: number;
  /** Per second since the reading before. */
  intake: number | null;
  accepted: number | null;
  sequenced: number | null;
  /** pending + ackPending at this reading. */
  lag: number | null;
};

/** What /status.json sends: sequenceIds as decimal strings (64-bit), rates per second, times as ISO strings. */
export type StatusSnapshot = {
  at: string;
  state: StatusState;
  /** Why the state is what it is, in one line. */
  reason: string;
  /** How long work has been waiting with nothing moving (also below the STALLED threshold); null: not waiting. */
  stuckSeconds: number | null;
  stallAfterSeconds: number;
  intake: (IntakeReading & { lag: number }) | null;
  heads: { database: string | null; trading: string | null; tradingBehind: string | null };
  rates: {
    intake: number | null;
    accepted: number | null;
    sequenced: number | null;
    redelivered: number | null;
  };
  /** This process's sequencer_redelivered_total; null when it runs no sequencer. */
  redelivered: number | null;
  process: { role: "leader" | "standby" | "api"; lease: string | null };
  /** `standbys`: the sequencers connected that are not the holder. */
  writer: { holder: string; term: string; live: boolean; standbys: string[] } | null;
  lastError: { message: string; since: string; lastSeen: string; current: boolean } | null;
  checks: Record<string, CheckResult>;
  history: { seconds: number; points: HistoryPoint[] };
};

export type StatusTrackerOptions = {
  /** Work waiting this long with nothing moving is STALLED. */
  stallAfterMs?: number;
  /** Readings kept for the history (the sparklines). */
  historyMs?: number;
  /** The span the current rates are averaged over. */
  rateWindowMs?: number;
};

export class StatusTracker {
  private readonly stallAfterMs: number;
  private readonly historyMs: number;
  private readonly rateWindowMs: number;
  private readings: StatusReading[] = [];
  /** When the database head took its current value (as far as these readings saw). */
  private headSince: number | null = null;
  private lastHead: bigint | null = null;
  /** The first database head seen: rates subtract it, so heads past 2^53 still give exact differences. */
  private headBase: bigint | null = null;
  /** When TRADING's head took its current value. */
  private tradingSince: number | null = null;
  private lastTrading: bigint | null = null;
  /** Since when the intake lag has been above zero in every reading; null while it is zero. */
  private lagSince: number | null = null;
  /** Since when TRADING has been behind the database in every reading; null while it is not. */
  private behindSince: number | null = null;
  private lastError: { message: string; since: number; lastSeen: number } | null = null;

  constructor(options: StatusTrackerOptions = {}) {
    this.stallAfterMs = options.stallAfterMs ?? 5_000;
    this.historyMs = options.historyMs ?? 180_000;
    this.rateWindowMs = options.rateWindowMs ?? 5_000;
  }

  /** Readings must come in time order; an older one than the last is ignored. */
  record(reading: StatusReading): void {
    const last = this.readings.at(-1);
    if (last && reading.at < last.at) return;
    this.readings.push(reading);
    const oldest = reading.at - this.historyMs;
    while ((this.readings[0]?.at ?? reading.at) < oldest) this.readings.shift();

    if (reading.databaseHead !== null && reading.databaseHead !== this.lastHead) {
      this.lastHead = reading.databaseHead;
      this.headSince = reading.at;
      this.headBase ??= reading.databaseHead;
    }
    if (reading.tradingHead !== null && reading.tradingHead !== this.lastTrading) {
      this.lastTrading = reading.tradingHead;
      this.tradingSince = reading.at;
    }
    const lag = reading.intake ? reading.intake.pending + reading.intake.ackPending : null;
    // An unknown lag neither starts nor ends a span: a probe timing out says nothing about the queue.
    if (lag !== null) this.lagSince = lag > 0 ? (this.lagSince ?? reading.at) : null;
    const { databaseHead, tradingHead } = reading;
    if (databaseHead !== null && tradingHead !== null) {
      this.behindSince = tradingHead < databaseHead ? (this.behindSince ?? reading.at) : null;
    }
    const error = reading.sequencer?.error ?? null;
    if (error !== null) {
      this.lastError =
        this.lastError?.message === error
          ? { ...this.lastError, lastSeen: reading.at }
          : { message: error, since: reading.at, lastSeen: reading.at };
    }
  }

  /** The figures as of the last reading (`now` only for how long a stall has lasted). */
  snapshot(now: number): StatusSnapshot {
    const latest = this.readings.at(-1);
    const intake = latest?.intake ?? null;
    const lag = intake ? intake.pending + intake.ackPending : null;
    const databaseHead = latest?.databaseHead ?? null;
    const tradingHead = latest?.tradingHead ?? null;
    const verdict = this.verdict(now, latest, lag);
    const sequencer = latest?.sequencer ?? null;
    const writer = latest?.writer ?? null;
    const error = this.lastError;
    return {
      at: new Date(latest?.at ?? now).toISOString(),
      ...verdict,
      stallAfterSeconds: this.stallAfterMs / 1000,
      intake: intake && lag !== null ? { ...intake, lag } : null,
      heads: {
        database: databaseHead?.toString() ?? null,
        trading: tradingHead?.toString() ?? null,
        tradingBehind:
          databaseHead !== null && tradingHead !== null ? (databaseHead - tradingHead).toString() : null,
      },
      rates: {
        intake: this.rate((r) => r.intake?.stored ?? null),
        accepted: this.rate((r) => r.accepted),
        sequenced: this.rate((r) => this.headOffset(r)),
        redelivered: this.rate((r) => r.sequencer?.redelivered ?? null),
      },
      redelivered: sequencer?.redelivered ?? null,
      process: sequencer
        ? { role: sequencer.leader ? "leader" : "standby", lease: sequencer.lease }
        : { role: "api", lease: null },
      writer: writer
        ? {
            holder: writer.holder,
            term: writer.term.toString(),
            live: writer.live,
            standbys: writer.sequencers.filter((name) => name !== writer.holder),
          }
        : null,
      lastError: error
        ? {
            message: error.message,
            since: new Date(error.since).toISOString(),
            lastSeen: new Date(error.lastSeen).toISOString(),
            current: latest?.sequencer?.error === error.message,
          }
        : null,
      checks: latest?.checks ?? {},
      history: { seconds: this.historyMs / 1000, points: this.history() },
    };
  }

  private verdict(
    now: number,
    latest: StatusReading | undefined,
    lag: number | null,
  ): Pick<StatusSnapshot, "state" | "reason" | "stuckSeconds"> {
    if (!latest) return { state: "unknown", reason: "no reading yet", stuckSeconds: null };
    const seconds = (since: number) => Math.max(0, now - since) / 1000;
    // The intake waits and the head stands still: stuck since the later of the two began. Likewise TRADING behind
    // the database and not moving (under load it is behind by a batch in flight at most readings, but it moves).
    const lagStuck = laterOf(this.lagSince, this.headSince);
    const behindStuck = laterOf(this.behindSince, this.tradingSince);
    // Stuck means over at least one interval between readings: a head that moved at this reading is not stuck.
    const stuck = [lagStuck, behindStuck].filter((t): t is number => t !== null && t < latest.at);
    const since = stuck.length > 0 ? Math.min(...stuck) : null;
    if (since !== null && now - since > this.stallAfterMs) {
      const why =
        behindStuck === since
          ? `TRADING has been behind the database for ${seconds(since).toFixed(0)} s`
          : `${lag ?? "some"} intake messages waiting and the database head has not moved for ${seconds(since).toFixed(0)} s`;
      return { state: "stalled", reason: why, stuckSeconds: seconds(since) };
    }
    if (latest.databaseHead === null) {
      return { state: "unknown", reason: "the database head cannot be read", stuckSeconds: null };
    }
    if (lag === null)
      return { state: "unknown", reason: "the intake lag cannot be read", stuckSeconds: null };
    if (since !== null) {
      return {
        state: "ok",
        reason: "work waiting, not yet long enough to call it a stall",
        stuckSeconds: seconds(since),
      };
    }
    return { state: "ok", reason: lag > 0 ? "sequencing" : "nothing waiting", stuckSeconds: null };
  }

  /** Per second over the last rateWindowMs: from the oldest reading in the window that has the figure to the newest. */
  private rate(pick: (r: StatusReading) => number | null): number | null {
    let newest: { at: number; value: number } | null = null;
    let oldest: { at: number; value: number } | null = null;
    for (let i = this.readings.length - 1; i >= 0; i--) {
      const r = this.readings[i] as StatusReading;
      const value = pick(r);
      if (value === null) continue;
      if (newest === null) newest = { at: r.at, value };
      else if (newest.at - r.at <= this.rateWindowMs) oldest = { at: r.at, value };
      else break;
    }
    return newest && oldest ? perSecond(oldest, newest) : null;
  }

  private headOffset(r: StatusReading): number | null {
    return r.databaseHead === null || this.headBase === null ? null : Number(r.databaseHead - this.headBase);
  }

  private history(): HistoryPoint[] {
    const points: HistoryPoint[] = [];
    for (let i = 1; i < this.readings.length; i++) {
      const before = this.readings[i - 1] as StatusReading;
      const r = this.readings[i] as StatusReading;
      const between = (pick: (x: StatusReading) => number | null) => {
        const a = pick(before);
        const b = pick(r);
        return a === null || b === null
          ? null
          : perSecond({ at: before.at, value: a }, { at: r.at, value: b });
      };
      points.push({
        at: r.at,
        intake: between((x) => x.intake?.stored ?? null),
        accepted: between((x) => x.accepted),
        sequenced: between((x) => this.headOffset(x)),
        lag: r.intake ? r.intake.pending + r.intake.ackPending : null,
      });
    }
    return points;
  }
}

/**
 * A counter's rate between two readings, one decimal. A counter that went down (a restored database, a restarted
 * process) has no meaningful rate over that span: 0 rather than a negative spike.
 */
function perSecond(a: { at: number; value: number }, b: { at: number; value: number }): number | null {
  const seconds = (b.at - a.at) / 1000;
  if (seconds <= 0) return null;
  return Math.round((Math.max(0, b.value - a.value) / seconds) * 10) / 10;
}

/** Both spans must be running; the stuck span began when the later of them did. */
function laterOf(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : Math.max(a, b);
}
