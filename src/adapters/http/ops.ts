/** Liveness and readiness. /healthz: the process answers. /readyz: its dependencies answer too. */
import { Elysia } from "elysia";

export type ReadinessCheck = () => Promise<Record<string, { ok: boolean; detail?: string }>>;

export function opsModule(readiness: ReadinessCheck) {
  return new Elysia({ name: "ops" })
    .get("/healthz", () => ({ status: "ok" }))
    .get("/readyz", async ({ set }) => {
      const checks = await readiness();
      const ready = Object.values(checks).every((check) => check.ok);
      set.status = ready ? 200 : 503;
      return { status: ready ? "ready" : "not ready", checks };
    });
}
