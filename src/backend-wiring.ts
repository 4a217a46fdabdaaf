// Wires the Docker pool runtime into the server: driver, session manager and executions, handed to the data plane
// and the operational routes (/healthz, /readyz, /metrics), which live in http/.
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { loadOrCreateSecretFile, randomToken } from "./auth/key-files.ts";
import { Fleet } from "./core/fleet/fleet.ts";
import type { FleetRouting } from "./core/fleet/fleet-routing.ts";
import { McpProtocol } from "./core/mcp/mcp-protocol.ts";
import { McpTools } from "./core/mcp/mcp-tools.ts";
import { Metrics } from "./core/metrics.ts";
import type { PoolLookup } from "./core/pools/pool-service.ts";
import type { ExecutionQueueLimits } from "./core/sessions/execution-queue.ts";
import { Executions } from "./core/sessions/executions.ts";
import { type CapacityLimits, defaultCapacity, SandboxCapacity } from "./core/sessions/sandbox-capacity.ts";
import { DEFAULT_SANDBOX, type SandboxDefaults } from "./core/sessions/sandbox-template.ts";
import { SessionManager } from "./core/sessions/session-manager.ts";
import { dataPlaneRoutes } from "./http/dataplane/dataplane-routes.ts";
import { ByteBudget, DEFAULT_UPLOAD_BUFFER_BYTES } from "./http/dataplane/upload-budget.ts";
import { operationalRoutes } from "./http/operational-routes.ts";
import { DockerDriver } from "./runtime/drivers/docker/docker-driver.ts";
import type { SandboxDriver } from "./runtime/sandbox-driver.ts";
import type { BackendContext, BackendParts } from "./server.ts";

export interface DockerBackendOptions {
  dockerHost?: string;
  sandbox?: Partial<SandboxDefaults>;
  /** How often expired sessions, Liveness probes and the engine are checked (SessionManagerDeps' defaults). */
  reapIntervalMs?: number;
  probeIntervalMs?: number;
  engineCheckIntervalMs?: number;
  /** Tests inject a driver (e.g. one that fails on purpose); the Docker driver otherwise. */
  driver?: SandboxDriver;
  /** Bytes all uploads in flight may hold in memory together (default DEFAULT_UPLOAD_BUFFER_BYTES). */
  uploadBufferBytes?: number;
  /** The server-wide bound on sandboxes; each limit defaults from the host's memory (defaultCapacity). */
  capacity?: Partial<CapacityLimits>;
  /** What may wait for a session's interpreter (default DEFAULT_EXECUTION_QUEUE_LIMITS). */
  executionQueue?: Partial<ExecutionQueueLimits>;
  /** Keep-alive comments on an idle streamed execution (default 15 s). */
  streamHeartbeatMs?: number;
  /** A fleet's heartbeat interval and the silence after which a server counts as gone (defaults 1 s and 5 s). */
  fleetHeartbeatMs?: number;
  fleetLiveWindowMs?: number;
  /** Tests inject where each session's requests are served (a stub fleet) into the data plane. */
  fleet?: FleetRouting;
}

export function dockerBackend(
  options: DockerBackendOptions = {},
): (ctx: BackendContext) => Promise<BackendParts> {
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
    const capacity = new SandboxCapacity({ ...defaultCapacity(totalmem()), ...options.capacity });
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
      secrets: (poolKey) => ctx.secrets.values(poolKey),
      ...(ctx.instanceId ? { instanceId: ctx.instanceId } : {}),
      sealer: ctx.secretBox,
      capacity,
      ...(options.reapIntervalMs ? { reapIntervalMs: options.reapIntervalMs } : {}),
      ...(options.probeIntervalMs ? { probeIntervalMs: options.probeIntervalMs } : {}),
      ...(options.engineCheckIntervalMs ? { engineCheckIntervalMs: options.engineCheckIntervalMs } : {}),
    });
    const executions = new Executions(sessions, metrics, { ...options.executionQueue });
    const uploads = new ByteBudget(options.uploadBufferBytes ?? DEFAULT_UPLOAD_BUFFER_BYTES);
    metrics.observeUploads(() => uploads.used);
    const mcp = {
      keys: ctx.mcpKeys,
      protocol: new McpProtocol(
        new McpTools({ sessions, executions, logger: ctx.logger.child({ component: "mcp" }) }),
      ),
    };

    // On a shared store (--store postgres://...) this server is one of a fleet.
    const fleet = ctx.fleet
      ? new Fleet({
          store: ctx.store,
          selfId: ctx.fleet.instanceId,
          address: () => ctx.fleet?.address ?? ctx.publicUrl,
          local: {
            holds: (poolKey, identifier) => sessions.holds(poolKey, identifier),
            counts: () => sessions.countsByPool(),
            capacity: () => Math.max(0, capacity.limits.maxSandboxes - capacity.used.sandboxes),
            engineUp: () => sessions.engineHealth().up,
            markReplaced: (poolKey, identifier) => sessions.markReplaced(poolKey, identifier),
            membersChanged: () => sessions.reconcileAll(),
            endMoved: (isOwn, before) => sessions.endMoved(isOwn, before),
          },
          logger: ctx.logger.child({ component: "fleet" }),
          ...(options.fleetHeartbeatMs ? { heartbeatMs: options.fleetHeartbeatMs } : {}),
          ...(options.fleetLiveWindowMs ? { liveWindowMs: options.fleetLiveWindowMs } : {}),
        })
      : undefined;
    if (fleet) sessions.joinFleet(fleet);

    return {
      provisioner: sessions,
      dataPlane: async (app: FastifyInstance, pools: PoolLookup) =>
        dataPlaneRoutes(app, {
          pools,
          sessions,
          executions,
          authenticator: ctx.authenticator,
          mcp,
          uploads,
          ...((options.fleet ?? fleet) ? { fleet: options.fleet ?? fleet } : {}),
          config: {
            get publicUrl() {
              return ctx.publicUrl;
            },
            trustedProxies: ctx.trustedProxies,
            ...(options.streamHeartbeatMs ? { streamHeartbeatMs: options.streamHeartbeatMs } : {}),
          },
        }),
      operational: async (app: FastifyInstance) =>
        operationalRoutes(app, {
          authenticator: ctx.authenticator,
          engine: {
            health: () => sessions.engineHealth(),
            sandboxRuntime: () => sessions.sandboxRuntime,
            ping: (call) => driver.ping(call),
          },
          metrics: metrics.registry,
          ...(fleet ? { fleet } : {}),
        }),
      start: async () => {
        await sessions.start();
        await fleet?.start();
      },
      ...(fleet ? { fleet } : {}),
      sandboxRuntime: () => sessions.sandboxRuntime,
      close: async () => {
        await fleet?.close();
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
