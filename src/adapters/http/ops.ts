/**
 * Liveness and readiness. /healthz: the process answers. /readyz: its dependencies answer too.
 *
 * Two audiences: the public port says only ready / not ready (a load balancer needs no more, and worker ids,
 * heads and leadership are nobody else's business); the ops listener (OPS_HOST:OPS_PORT, loopback by default)
 * adds every check's detail, and /metrics.
 */
import { Elysia } from "elysia";
import { documented, statusSchema } from "./openapi-responses.ts";

export type ReadinessCheck = () => Promise<Record<string, { ok: boolean; detail?: string }>>;

/** The public port's health routes: status only. */
export function publicHealthModule(readiness: ReadinessCheck) {
  return new Elysia({ name: "public-health" })
    .get("/healthz", () => ({ status: "ok" }), {
      detail: documented({
        summary: "Liveness",
        tags: ["ops"],
        access: "none",
        answers: { 200: { description: "The process answers.", schema: statusSchema("ok") } },
        errors: [],
      }),
    })
    .get(
      "/readyz",
      async ({ set }) => {
        const ready = Object.values(await readiness()).every((check) => check.ok);
        set.status = ready ? 200 : 503;
        return { status: ready ? "ready" : "not ready" };
      },
      {
        detail: documented({
          summary: "Readiness: ready or not ready (details on the ops listener)",
          tags: ["ops"],
          access: "none",
          answers: {
            200: { description: "Every dependency answers.", schema: statusSchema("ready") },
            503: {
              description: "A dependency does not answer; which one is said on the ops listener only.",
              schema: statusSchema("not ready"),
            },
          },
          errors: [],
        }),
      },
    );
}

/** The ops listener's health routes: every check with its detail. */
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
