// Wires the Docker runtime into the server: driver, session manager, executions, the data plane and the
// operational routes (/healthz, /readyz, /metrics).
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSecretFile, randomToken } from "./auth/key-files.ts";
import { Metrics } from "./core/metrics.ts";
import type { ExecutionQueueLimits } from "./core/sessions/execution-queue.ts";
import { Executions } from "./core/sessions/executions.ts";
import { type CapacityLimits, defaultCapacity, SandboxCapacity } from "./core/sessions/sandbox-capacity.ts";
import { DEFAULT_SANDBOX, type SandboxDefaults } from "./core/sessions/sandbox-template.ts";
import { SessionManager } from "./core/sessions/session-manager.ts";
import { authenticateHeaders } from "./http/auth-hook.ts";
import { dataPlaneRoutes } from "./http/dataplane/dataplane-routes.ts";
import { AuthenticationError } from "./http/errors.ts";
import { DockerDriver } from "./runtime/drivers/docker/docker-driver.ts";
import type { SandboxDriver } from "./runtime/sandbox-driver.ts";
import type { RuntimeContext, RuntimeParts } from "./server.ts";

export interface DockerRuntimeOptions {
  dockerHost?: string;
  sandbox?: Partial<SandboxDefaults>;
  reapIntervalMs?: number;
  /** Tests inject a driver (e.g. one that fails on purpose); the Docker driver otherwise. */
  driver?: SandboxDriver;
  /** Bytes all uploads in flight may hold in memory together (default DEFAULT_UPLOAD_BUFFER_BYTES). */
  uploadBufferBytes?: number;
  /** The server-wide bound on sandboxes; each limit defaults from the host's memory (defaultCapacity). */
  capacity?: Partial<CapacityLimits>;
  /** What may wait for a session's interpreter (default DEFAULT_EXECUTION_QUEUE_LIMITS). */
  executionQueue?: Partial<ExecutionQueueLimits>;
}

export function dockerRuntime(
  options: DockerRuntimeOptions = {},
): (ctx: RuntimeContext) => Promise<RuntimeParts> {
  return async (ctx) => {
    const driver =
      options.driver ??
      new DockerDriver({
        ...(options.dockerHost ? { dockerHost: options.dockerHost } : {}),
        logger: ctx.logger.child({ component: "docker" }),
        // The engine's embedded DNS forwards from inside the sandbox; let egress sandboxes reach the host's resolvers.
        egressDnsServers: hostNameservers(),
      });
    const metrics = new Metrics();
    const sessions = new SessionManager({
      store: ctx.store,
      driver,
      metrics,
      logger: ctx.logger.child({ component: "sessions" }),
      now: ctx.now,
      defaults: { ...DEFAULT_SANDBOX, ...options.sandbox },
      socketsDir: join(ctx.dataDir, "sockets"),
      agentSecret: loadOrCreateSecretFile(join(ctx.dataDir, "keys", "agent.key"), () => randomToken(32))
        .value,
      secrets: (poolKey) => ctx.pools().secretValues(poolKey),
      capacity: new SandboxCapacity({ ...defaultCapacity(totalmem()), ...options.capacity }),
      ...(options.reapIntervalMs ? { reapIntervalMs: options.reapIntervalMs } : {}),
    });
    const executions = new Executions(sessions, metrics, { ...options.executionQueue });

    return {
      runtime: sessions,
      dataPlane: async (app: FastifyInstance) =>
        dataPlaneRoutes(app, {
          store: ctx.store,
          sessions,
          executions,
          authenticator: ctx.authenticator,
          config: {
            get publicUrl() {
              return ctx.publicUrl;
            },
            ...(options.uploadBufferBytes ? { uploadBufferBytes: options.uploadBufferBytes } : {}),
            trustedProxies: ctx.trustedProxies,
          },
          now: ctx.now,
        }),
      operational: async (app: FastifyInstance) => {
        // Liveness stays 200 while the engine is away (restarting this process would not bring it back) but
        // says "degraded"; readiness is 503 until the engine answers, so a balancer sends nobody here.
        app.get("/healthz", async () => {
          const engine = sessions.engineHealth();
          const sandboxRuntime = sessions.sandboxRuntime ?? null;
          return engine.up
            ? { status: "ok", engine: "up", sandboxRuntime }
            : {
                status: "degraded",
                engine: "down",
                since: engine.since,
                reason: engine.error,
                sandboxRuntime,
              };
        });
        app.get("/readyz", async (_request, reply) => {
          try {
            await driver.ping({ signal: AbortSignal.timeout(2000) });
            return { status: "ready", engine: "up" };
          } catch (err) {
            return reply
              .code(503)
              .header("retry-after", "5")
              .send({ status: "degraded", engine: "down", reason: (err as Error).message });
          }
        });
        app.get("/metrics", async (request, reply) => {
          const principal = await authenticateHeaders(ctx.authenticator, request.headers);
          if (principal?.kind !== "admin") {
            throw new AuthenticationError(
              "InvalidAuthenticationToken",
              "/metrics needs the admin credential.",
            );
          }
          return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
        });
      },
      start: () => sessions.start(),
      sandboxRuntime: () => sessions.sandboxRuntime,
      close: async () => {
        await sessions.close();
        await driver.close();
      },
    };
  };
}

/** IPv4 nameservers from /etc/resolv.conf (loopback ones excluded: a sandbox cannot reach the host's loopback). */
function hostNameservers(): string[] {
  try {
    return readFileSync("/etc/resolv.conf", "utf8")
      .split("\n")
      .map((l) => /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(l)?.[1])
      .filter((ip): ip is string => ip !== undefined && !ip.startsWith("127."));
  } catch {
    return [];
  }
}
