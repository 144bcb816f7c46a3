/**
 * GET /readyz: one check per part this process runs — NATS and the database always; the intake's room and the
 * worker id lease with the API role; the writer lease and the sequencer's state with the sequencer role.
 */
import type { Database } from "../adapters/db/client.ts";
import type { ReadinessCheck } from "../adapters/http/ops.ts";
import type { ApiRole } from "./api-role.ts";
import type { SequencerRole } from "./sequencer-role.ts";

export type ReadinessParts = {
  natsUp(): boolean;
  database: Pick<Database, "ping">;
  api?: Pick<ApiRole, "publisher" | "workerLease"> | undefined;
  sequencer?: Pick<SequencerRole, "lease" | "leadership"> | undefined;
};

export function readinessCheck(parts: ReadinessParts): ReadinessCheck {
  const { api, sequencer } = parts;
  return async () => {
    const checks: Record<string, { ok: boolean; detail?: string }> = { nats: { ok: parts.natsUp() } };
    try {
      await parts.database.ping();
      checks.database = { ok: true };
    } catch (error) {
      checks.database = { ok: false, detail: error instanceof Error ? error.message : String(error) };
    }
    if (api) {
      const full = api.publisher.fullness();
      checks.intake = full === null ? { ok: true } : { ok: false, detail: full };
      if (api.workerLease) {
        const lease = api.workerLease;
        checks.workerId = { ok: lease.isHeld(), detail: `leased worker id ${lease.workerId}` };
      }
    }
    if (sequencer) {
      const { leadership } = sequencer;
      checks.leader = { ok: leadership.leader, detail: sequencer.lease.describe() };
      const status = leadership.term?.sequencer.status();
      checks.sequencer = status
        ? { ok: status.tradingInSync, detail: status.lastError ?? `head ${status.head}` }
        : { ok: false, detail: "not sequencing" };
    }
    return checks;
  };
}
