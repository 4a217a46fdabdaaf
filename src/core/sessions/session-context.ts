// What every part of the session machinery shares: the resolved dependencies, the live sandboxes per
// pool, and the flags that say whether the server may hand out sessions yet. One instance per SessionManager.
import type { Logger } from "pino";
import type { AgentClient } from "../../agent-channel/agent-client.ts";
import type { AgentEndpoint } from "../../agent-channel/agent-endpoint.ts";
import { SecretBox } from "../../auth/secret-box.ts";
import type { SessionPoolError } from "../../errors.ts";
import { RuntimeUnavailableError } from "../../runtime/errors.ts";
import { LABEL_INSTANCE, LABEL_MANAGED, MANAGED_VALUE } from "../../runtime/labels.ts";
import type { SandboxDriver } from "../../runtime/sandbox-driver.ts";
import type { Store, StoredPool, StoredSession } from "../../store/store.ts";
import { DynamicApisNotAllowedError, SessionPoolNotFoundError } from "../errors.ts";
import type { Metrics } from "../metrics.ts";
import { type PoolDoc, poolDocOf } from "../pools/pool-doc.ts";
import { SandboxCapacity } from "./sandbox-capacity.ts";
import type { SandboxDefaults, SandboxKind, SandboxTemplate } from "./sandbox-template.ts";
import type { AppliedEnvironment } from "./session-environment.ts";

export interface SessionManagerDeps {
  store: Store;
  driver: SandboxDriver;
  metrics: Metrics;
  logger: Logger;
  now: () => Date;
  defaults: SandboxDefaults;
  /** Where per-session agent socket directories live (bind-mounted read-only into sandboxes). */
  socketsDir: string;
  /** The server's secret the agents' attach keys are derived from (see agentKey); kept across restarts. */
  agentSecret: string;
  /** How often expired sessions are looked for. */
  reapIntervalMs?: number;
  /** Sandboxes created at once across all pools (the engine serialises much of the work anyway). */
  createConcurrency?: number;
  /** How long a new sandbox's agent (or a custom container's port) may take to answer. */
  agentStartTimeoutMs?: number;
  /** The pool's secret values, opened only when a sandbox is created or an image pulled. */
  secrets?: (poolKey: string) => Promise<ReadonlyMap<string, string>>;
  /** Seals what a session was personalised with before it is stored (the server's secret box). */
  sealer?: Sealer;
  /** How often liveness probes are checked. */
  probeIntervalMs?: number;
  /** The server-wide bound on live sandboxes and their committed memory (unbounded when absent). */
  capacity?: SandboxCapacity;
  /** How often the engine is pinged; a failed ping marks it down, the next good one resynchronises. */
  engineCheckIntervalMs?: number;
  /**
   * This server's instance id (the label on its sandboxes). A shared store (a fleet) cannot hold it, so the server
   * keeps it in its data dir; without it, the store's meta keeps it (the embedded store is this server's alone).
   */
  instanceId?: string;
}

export type ResolvedDeps = Required<SessionManagerDeps>;

export interface Sealer {
  seal(plaintext: string): string;
  open(sealed: string): string;
}

/** A live sandbox the manager knows: warm in a pool, or allocated to an identifier. */
export interface LiveSandbox {
  rec: StoredSession;
  kind: SandboxKind;
  sandboxId: string;
  templateHash: string;
  /** Code interpreters: the agent's socket directory and the channel it attaches to. */
  socketDir: string | undefined;
  agent: AgentEndpoint | undefined;
  /** Custom containers: where the container's target port is reachable from this host. */
  address: string | undefined;
  port: number | undefined;
  /** Liveness bookkeeping: consecutive failures and when the next probe is due. */
  probeFailures: number;
  nextProbeAt: number;
  /** Requests in flight (a proxied stream, a WebSocket): a Timed session is not idle while any is open. */
  inFlight: number;
  /** When the idle clock was last written to the store (it moves in memory on every request). */
  persistedAccessMs: number;
  /** The memory limit this sandbox holds of the server's capacity; 0 once given back. */
  heldMemoryBytes: number;
  /** The environment variables its session was claimed with (names and a digest; no values). */
  environment: AppliedEnvironment | undefined;
}

/** One pool's sandboxes and its reconciler's bookkeeping. */
export interface PoolState {
  key: string;
  ready: LiveSandbox[];
  allocated: Map<string, LiveSandbox>;
  warmPending: number;
  coldPending: number;
  template: SandboxTemplate | undefined;
  reconciling: Promise<void> | undefined;
  again: boolean;
  retryTimer: NodeJS.Timeout | undefined;
  refillTimer: NodeJS.Timeout | undefined;
  /** The pool generation and time st.template was resolved for (image lookups are engine calls). */
  templateFor: { generation: number; atMs: number } | undefined;
  failures: number;
  lastError: SessionPoolError | undefined;
  controller: AbortController;
  /** Identifiers whose sandbox died under them: their next session says so. */
  replaced: Set<string>;
  /**
   * The pool's document as last read from the store (every claim and reconcile reads it): what a request's idle
   * clock is reset with, at once, without a store round trip on the request's path.
   */
  doc: PoolDoc | undefined;
}

/** What a fleet tells this server about the pools it shares with the other servers (core/fleet). */
export interface FleetShare {
  /** This server's part of a pool's `total` ready sandboxes. */
  readyShare(poolKey: string, total: number): number;
  /** The pool's sessions allocated on the other servers (the pool's limit counts the whole fleet). */
  allocatedElsewhere(poolKey: string): number;
}

/** Ends a live sandbox's session and removes its sandbox (reasons become metric labels: a small fixed set). */
export type EndSession = (live: LiveSandbox, reason: string) => Promise<void>;

export class SessionContext {
  readonly d: ResolvedDeps;
  readonly pools = new Map<string, PoolState>();
  readonly bySandbox = new Map<string, LiveSandbox>();
  instanceId = "";
  closed = false;
  /** Set when the server is one of a fleet. */
  fleet: FleetShare | undefined;
  /** The engine did not answer at start: the last run's sandboxes are not adopted yet. */
  adoptionPending = false;

  constructor(deps: SessionManagerDeps) {
    this.d = {
      reapIntervalMs: 1000,
      createConcurrency: 4,
      agentStartTimeoutMs: 60_000,
      secrets: async () => new Map(),
      // Without the server's box (tests that build the manager alone), a key of this process only.
      sealer: new SecretBox(SecretBox.generateKey()),
      probeIntervalMs: 1000,
      engineCheckIntervalMs: 2000,
      instanceId: "",
      capacity: new SandboxCapacity({ maxSandboxes: Infinity, maxSandboxMemoryBytes: Infinity }),
      ...deps,
    };
  }

  get logger(): Logger {
    return this.d.logger;
  }

  state(key: string): PoolState {
    let st = this.pools.get(key);
    if (!st) {
      st = {
        key,
        ready: [],
        allocated: new Map(),
        warmPending: 0,
        coldPending: 0,
        template: undefined,
        reconciling: undefined,
        again: false,
        retryTimer: undefined,
        refillTimer: undefined,
        templateFor: undefined,
        failures: 0,
        lastError: undefined,
        controller: new AbortController(),
        replaced: new Set(),
        doc: undefined,
      };
      this.pools.set(key, st);
    }
    return st;
  }

  /** The live sandbox allocated to `identifier` in its pool, when `live` is still that one. */
  isCurrent(live: LiveSandbox): boolean {
    const { identifier, poolKey } = live.rec;
    return identifier !== undefined && this.pools.get(poolKey)?.allocated.get(identifier) === live;
  }

  publish(st: PoolState): void {
    this.d.metrics.readySessions.set({ pool: st.key }, st.ready.length);
    this.d.metrics.allocatedSessions.set({ pool: st.key }, st.allocated.size);
    this.d.metrics.pendingSessions.set({ pool: st.key }, st.warmPending + st.coldPending);
  }

  /** A record of this server's (in a fleet, the store holds the other servers' records too). */
  owns(rec: StoredSession): boolean {
    return rec.owner === undefined || rec.owner === this.instanceId;
  }

  /** The pool's sessions allocated on the other servers of a fleet; 0 alone. */
  allocatedElsewhere(poolKey: string): number {
    return this.fleet?.allocatedElsewhere(poolKey) ?? 0;
  }

  /** The labels of everything this server instance made in the engine. */
  ownLabels(): Record<string, string> {
    return { [LABEL_MANAGED]: MANAGED_VALUE, [LABEL_INSTANCE]: this.instanceId };
  }

  /** The pool's stored document, or undefined when it is gone. */
  async docOf(poolKey: string): Promise<PoolDoc | undefined> {
    const pool = await this.d.store.getPool(poolKey);
    const doc = pool ? poolDocOf(pool) : undefined;
    const st = this.pools.get(poolKey);
    if (st && doc) st.doc = doc;
    return doc;
  }

  /** The pool and its document for a data-plane request: SessionPoolNotFound when gone or being deleted. */
  async poolDoc(poolKey: string): Promise<{ pool: StoredPool; doc: PoolDoc }> {
    const pool = await this.d.store.getPool(poolKey);
    const name = poolKey.split("/")[2] ?? poolKey;
    if (!pool) throw new SessionPoolNotFoundError(name);
    const doc = poolDocOf(pool);
    if (doc.properties.provisioningState === "Deleting") throw new SessionPoolNotFoundError(name);
    const st = this.pools.get(poolKey);
    if (st) st.doc = doc;
    return { pool, doc };
  }

  /**
   * Session requests before the sandboxes of the last run are adopted would allocate beside them (the same
   * identifier twice): they get a 503 until the engine has answered once.
   */
  requireAdopted(): void {
    if (this.adoptionPending) {
      throw new RuntimeUnavailableError(
        "The container engine has not answered since the server started; sessions are served as soon as it does.",
      );
    }
  }

  /** Provisioning and deprovision wait for adoption (their operations stay InProgress meanwhile). */
  async untilAdopted(signal?: AbortSignal): Promise<void> {
    while (this.adoptionPending && !this.closed) {
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, this.d.engineCheckIntervalMs).unref());
    }
    if (this.closed) throw new RuntimeUnavailableError("The server is shutting down.");
  }
}

export async function inBatches<T>(
  items: T[],
  size: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

/** The agent of a code-interpreter session; custom containers have none (their traffic is proxied). */
export function agentOf(live: LiveSandbox): AgentClient {
  if (live.agent === undefined) throw new DynamicApisNotAllowedError();
  return live.agent.current();
}
