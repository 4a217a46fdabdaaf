// The operational routes: /healthz (liveness), /readyz (readiness) without credentials, and /metrics (Prometheus)
// behind the admin hook. Registered only when the server runs sandboxes (they report on the engine).
import type { FastifyInstance } from "fastify";
import { AuthenticationError } from "../auth/errors.ts";
import type { Authenticator } from "../auth/principal.ts";
import { requireAdmin } from "./auth-hook.ts";

export interface OperationalOptions {
  authenticator: Authenticator;
  engine: {
    /** The session manager's last view of the engine (no engine call). */
    health(): { up: boolean; since?: string | undefined; error?: string | undefined };
    /** The sandbox runtime sandboxes run under ("runsc" is gVisor), once the engine has answered. */
    sandboxRuntime(): string | undefined;
    /** Asks the engine now; rejects when it does not answer. */
    ping(options: { signal: AbortSignal }): Promise<unknown>;
  };
  metrics: { readonly contentType: string; metrics(): Promise<string> };
  /** The fleet this server is one of (a shared store), for /healthz and the admin's /fleet. */
  fleet?: {
    readonly selfId: string;
    readonly isJanitor: boolean;
    members(): readonly {
      id: string;
      address: string;
      engineUp: boolean;
      capacity: number;
      ready: Record<string, number>;
      allocated: Record<string, number>;
      heartbeatAt: string;
    }[];
  };
}

const READY_TIMEOUT_MS = 2000;

export async function operationalRoutes(app: FastifyInstance, o: OperationalOptions): Promise<void> {
  // Liveness stays 200 while the engine is away (restarting this process would not bring it back) but says
  // "degraded"; readiness is 503 until the engine answers, so a balancer sends nobody here.
  app.get("/healthz", async () => {
    const engine = o.engine.health();
    const sandboxRuntime = o.engine.sandboxRuntime() ?? null;
    // Addresses and loads of the other servers are for the admin (/fleet); here only how many answer.
    const fleet = o.fleet ? { fleet: { self: o.fleet.selfId, members: o.fleet.members().length } } : {};
    return engine.up
      ? { status: "ok", engine: "up", sandboxRuntime, ...fleet }
      : {
          status: "degraded",
          engine: "down",
          since: engine.since,
          reason: engine.error,
          sandboxRuntime,
          ...fleet,
        };
  });
  app.get("/readyz", async (_request, reply) => {
    try {
      await o.engine.ping({ signal: AbortSignal.timeout(READY_TIMEOUT_MS) });
      return { status: "ready", engine: "up" };
    } catch (err) {
      return reply
        .code(503)
        .header("retry-after", "5")
        .send({ status: "degraded", engine: "down", reason: (err as Error).message });
    }
  });
  await app.register(async (admin) => {
    requireAdmin(
      admin,
      o.authenticator,
      () => new AuthenticationError("InvalidAuthenticationToken", "/metrics needs the admin credential."),
    );
    admin.get("/metrics", async (_request, reply) =>
      reply.type(o.metrics.contentType).send(await o.metrics.metrics()),
    );
    // The fleet as this server sees it: the live servers (heartbeats within the window), their loads, and which
    // one holds the fleet-wide chores. 404 on a server alone.
    admin.get("/fleet", async (_request, reply) => {
      const fleet = o.fleet;
      if (!fleet)
        return reply.code(404).send({
          error: {
            code: "NotFound",
            message: "This server is not one of a fleet: it runs on a store of its own (see --store).",
          },
        });
      return { self: fleet.selfId, janitor: fleet.isJanitor, members: fleet.members() };
    });
  });
}
