// Sessions: hands a sandbox to each new identifier (a warm one when there is one, a cold start otherwise, 429 at
// the limit), keeps track of who holds what, ends sessions on cooldown or request, and adopts live sandboxes after
// a restart. Implements PoolRuntime: provisioning means "image present and ready sessions warm".
import { chown, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { AgentClient, MetadataResponse } from "../../agents/agent-client.ts";
import { AgentEndpoint, agentKey, waitForAgent } from "../../agents/agent-endpoint.ts";
import { isSessionPoolError, SessionPoolError } from "../../errors.ts";
import { ImageNotFoundError, RuntimeUnavailableError } from "../../runtime/errors.ts";
import {
  buildLabels,
  LABEL_INSTANCE,
  LABEL_KIND,
  LABEL_MANAGED,
  LABEL_SESSION,
  LABEL_TEMPLATE_HASH,
  MANAGED_VALUE,
} from "../../runtime/labels.ts";
import type { RegistryAuth, SandboxDriver, SandboxEvent } from "../../runtime/sandbox-driver.ts";
import { chooseSandboxRuntimes, GVISOR, type SandboxRuntimes } from "../../runtime/sandbox-runtime.ts";
import { storageFailure } from "../../store/storage-errors.ts";
import type { Store, StoredPool, StoredSession } from "../../store/store.ts";
import {
  PoolExceedsServerCapacityError,
  PoolNotReadyError,
  SessionLimitError,
  SessionPoolNotFoundError,
  SessionStartError,
} from "../errors.ts";
import type { Metrics } from "../metrics.ts";
import type { PoolDoc } from "../pools/pool-doc.ts";
import type { PoolRuntime } from "../pools/pool-service.ts";
import { probeOnce, startupPasses, waitForPort } from "./probes.ts";
import { SandboxCapacity } from "./sandbox-capacity.ts";
import {
  imageRefFor,
  RuntimeUnsupportedError,
  runtimeUnavailable,
  SANDBOX_UID,
  type SandboxDefaults,
  type SandboxKind,
  type SandboxTemplate,
  sessionMemoryBytes,
  templateFor,
  UnsupportedContainerTypeError,
} from "./sandbox-template.ts";
import { isExpired, sessionExpiry } from "./session-lifecycle.ts";

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
  secrets?: (poolKey: string) => ReadonlyMap<string, string>;
  /** How often liveness probes are checked. */
  probeIntervalMs?: number;
  /** The server-wide bound on live sandboxes and their committed memory (unbounded when absent). */
  capacity?: SandboxCapacity;
  /** How often the engine is pinged; a failed ping marks it down, the next good one resynchronises. */
  engineCheckIntervalMs?: number;
}

/** The engine as the manager last saw it (served by /healthz and /readyz). */
export interface EngineHealth {
  up: boolean;
  /** When it last changed between up and down. */
  since: string;
  /** Why it is down. */
  error: string | undefined;
}

/** A live sandbox the manager knows: warm in a pool, or allocated to an identifier. */
export interface Member {
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
}

interface PoolState {
  key: string;
  ready: Member[];
  allocated: Map<string, Member>;
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
}

export interface Acquired {
  member: Member;
  /** The session was allocated by this request (warm claim or cold start). */
  fresh: boolean;
  /** A previous session of this identifier ended unexpectedly (its sandbox died). */
  replaced: boolean;
  allocationMs: number;
}

const REFILL_DELAY_MS = 50;
/** How long a resolved image id is trusted before the engine is asked again (a rebuilt :latest rolls the pool). */
const TEMPLATE_TTL_MS = 10_000;
const TEARDOWN_CONCURRENCY = 8;
const ENGINE_PING_TIMEOUT_MS = 2_000;
/**
 * The idle clock is written to the store at most this often per session: every write is a durable commit, and
 * after a restart a clock up to this much behind only ends an idle session that much earlier.
 */
const TOUCH_PERSIST_MS = 5_000;

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

export class SessionManager implements PoolRuntime {
  readonly #d: Required<Omit<SessionManagerDeps, "defaults">> & { defaults: SandboxDefaults };
  readonly #pools = new Map<string, PoolState>();
  readonly #bySandbox = new Map<string, Member>();
  readonly #inflight = new Map<string, Promise<Acquired>>();
  readonly #metadata = new Map<string, Promise<MetadataResponse>>();
  #instanceId = "";
  #adopted: Promise<void> | undefined;
  #reaper: NodeJS.Timeout | undefined;
  #prober: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #engine: EngineHealth;
  #engineCheck: Promise<void> | undefined;
  #resyncing: Promise<boolean> | undefined;
  #resyncAgain = false;
  #resyncRefill = false;
  /** The engine came back and its sandboxes have not been re-read successfully yet. */
  #resyncPending = false;
  /** The engine did not answer at start: the last run's sandboxes are not adopted yet. */
  #adoptionPending = false;
  #unwatch: (() => void) | undefined;
  #createSlots: number;
  readonly #slotWaiters: (() => void)[] = [];
  #closed = false;
  #runtimes: SandboxRuntimes | undefined;

  constructor(deps: SessionManagerDeps) {
    this.#d = {
      reapIntervalMs: 1000,
      createConcurrency: 4,
      agentStartTimeoutMs: 60_000,
      secrets: () => new Map(),
      probeIntervalMs: 1000,
      engineCheckIntervalMs: 2000,
      capacity: new SandboxCapacity({ maxSandboxes: Infinity, maxSandboxMemoryBytes: Infinity }),
      ...deps,
    };
    this.#createSlots = this.#d.createConcurrency;
    this.#engine = { up: true, since: this.#d.now().toISOString(), error: undefined };
    this.#d.metrics.engineUp.set(1);
  }

  /** The engine's health as last checked (every engineCheckIntervalMs). */
  engineHealth(): EngineHealth {
    return { ...this.#engine };
  }

  get instanceId(): string {
    return this.#instanceId;
  }

  /** Adopts live sandboxes, removes orphans, starts the reaper. Call once before serving. */
  start(): Promise<void> {
    this.#adopted ??= this.#begin();
    return this.#adopted;
  }

  /**
   * Session requests before the sandboxes of the last run are adopted would allocate beside them (the same
   * identifier twice): they get a 503 until the engine has answered once.
   */
  #requireAdopted(): void {
    if (this.#adoptionPending) {
      throw new RuntimeUnavailableError(
        "The container engine has not answered since the server started; sessions are served as soon as it does.",
      );
    }
  }

  /** Provisioning and teardown wait for adoption (their operations stay InProgress meanwhile). */
  async #untilAdopted(signal?: AbortSignal): Promise<void> {
    while (this.#adoptionPending && !this.#closed) {
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, this.#d.engineCheckIntervalMs).unref());
    }
    if (this.#closed) throw new RuntimeUnavailableError("The server is shutting down.");
  }

  // ---- PoolRuntime ----------------------------------------------------------------------------------------

  async provision(pool: StoredPool, signal: AbortSignal): Promise<void> {
    await this.start();
    await this.#untilAdopted(signal);
    const st = this.#state(pool.key);
    st.lastError = undefined;
    st.failures = 0;
    const doc = pool.doc as unknown as PoolDoc;
    st.template = await this.#resolveTemplate(doc, pool, signal, {
      pull: doc.properties.containerType === "CustomContainer",
    });
    st.templateFor = { generation: pool.generation, atMs: performance.now() };
    for (;;) {
      signal.throwIfAborted();
      await this.#reconcile(pool.key);
      signal.throwIfAborted();
      const current = this.#d.store.getPool(pool.key);
      if (!current || current.generation !== pool.generation) return; // superseded; the newer run settles
      const target = this.#readyTarget(current.doc as unknown as PoolDoc, st);
      const warm = st.ready.filter((m) => m.templateHash === st.template?.hash).length;
      if (warm >= target) return;
      if (st.lastError) throw st.lastError;
    }
  }

  async teardown(poolKey: string, signal?: AbortSignal): Promise<void> {
    await this.start();
    await this.#untilAdopted(signal);
    const st = this.#pools.get(poolKey);
    if (st) {
      st.controller.abort();
      if (st.retryTimer) clearTimeout(st.retryTimer);
      await st.reconciling?.catch(() => {});
      if (st.refillTimer) clearTimeout(st.refillTimer);
      await inBatches([...st.ready, ...st.allocated.values()], TEARDOWN_CONCURRENCY, (m) =>
        this.#end(m, "deleted"),
      );
      this.#pools.delete(poolKey);
    }
    // Anything else labelled for the pool (a creation in flight, a sandbox from before a crash) goes too.
    const leftovers = await this.#d.driver.list({ ...this.#ownLabels(), "io.sessionpool.pool": poolKey });
    await inBatches(leftovers, TEARDOWN_CONCURRENCY, (s) => this.#d.driver.remove(s.id));
    for (const s of this.#d.store.listSessions(poolKey)) {
      this.#d.store.deleteSession(s.id);
      await rm(join(this.#d.socketsDir, s.id), { recursive: true, force: true });
    }
  }

  // ---- Data plane -----------------------------------------------------------------------------------------

  /** The session for `identifier`, allocating one on first use. */
  async acquire(poolKey: string, identifier: string, signal?: AbortSignal): Promise<Acquired> {
    await this.start();
    this.#requireAdopted();
    const st = this.#state(poolKey);
    const existing = st.allocated.get(identifier);
    if (existing) {
      this.touch(existing);
      return { member: existing, fresh: false, replaced: false, allocationMs: 0 };
    }
    const flightKey = `${poolKey}\n${identifier}`;
    let flight = this.#inflight.get(flightKey);
    if (!flight) {
      flight = this.#allocate(poolKey, identifier, signal).finally(() => this.#inflight.delete(flightKey));
      this.#inflight.set(flightKey, flight);
    }
    const acquired = await flight;
    // Concurrent first requests share one allocation; only one of them is "fresh" for metrics' sake.
    return acquired;
  }

  /** The allocated session for `identifier`, or undefined; never allocates. */
  find(poolKey: string, identifier: string): Member | undefined {
    this.#requireAdopted();
    return this.#pools.get(poolKey)?.allocated.get(identifier);
  }

  list(poolKey: string): Member[] {
    this.#requireAdopted();
    return [...(this.#pools.get(poolKey)?.allocated.values() ?? [])];
  }

  /** Every request resets the idle clock (Timed pools). */
  touch(member: Member): void {
    const pool = this.#d.store.getPool(member.rec.poolKey);
    if (!pool) return;
    const now = this.#d.now();
    member.rec.lastAccessedAt = now.toISOString();
    member.rec.expiresAt = sessionExpiry(pool.doc as unknown as PoolDoc, {
      allocatedAt: new Date(member.rec.allocatedAt ?? member.rec.createdAt),
      lastAccessedAt: now,
    }).toISOString();
    // The idle clock lives in memory (the reaper reads it there); the store only carries it across a restart,
    // so a data dir that cannot be written (disk full) costs that, not the request.
    if (now.getTime() - member.persistedAccessMs < TOUCH_PERSIST_MS) return;
    member.persistedAccessMs = now.getTime();
    try {
      this.#d.store.putSession(member.rec);
    } catch (err) {
      this.#d.logger.warn({ session: member.rec.id, err }, "could not record a session's last access");
    }
  }

  /** Ends the identifier's session now; false when there was none. */
  async stop(poolKey: string, identifier: string, reason = "stopped"): Promise<boolean> {
    await this.start();
    this.#requireAdopted();
    const member = this.#pools.get(poolKey)?.allocated.get(identifier);
    if (!member) {
      const flight = this.#inflight.get(`${poolKey}\n${identifier}`);
      if (!flight) return false;
      const acquired = await flight.catch(() => undefined);
      if (!acquired) return false;
      await this.#end(acquired.member, reason);
      return true;
    }
    await this.#end(member, reason);
    return true;
  }

  /** Ends sessions whose cooldown or max-alive period has passed. Runs on a timer; tests may call it. */
  async reap(): Promise<void> {
    const now = this.#d.now();
    for (const st of this.#pools.values()) {
      for (const m of [...st.allocated.values()]) {
        if (!isExpired(m.rec.expiresAt, now)) continue;
        // A Timed session with a request still open is in use; its idle clock starts when that ends.
        // maxAlivePeriodInSeconds (OnContainerExit) is a hard cap all the same.
        const doc = this.#d.store.getPool(st.key)?.doc as PoolDoc | undefined;
        const timed =
          doc?.properties.dynamicPoolConfiguration.lifecycleConfiguration.lifecycleType !== "OnContainerExit";
        if (timed && m.inFlight > 0) continue;
        await this.#end(m, "expired");
      }
    }
  }

  /** A pool's scale settings changed: converge now. */
  nudge(poolKey: string): void {
    void this.#reconcile(poolKey);
  }

  /** What the pool's sandboxes really have installed, read from a running sandbox once per image. */
  async metadata(poolKey: string): Promise<MetadataResponse> {
    await this.start();
    this.#requireAdopted();
    const { pool, doc } = this.#poolDoc(poolKey);
    const st = this.#state(poolKey);
    st.template ??= await this.#resolveTemplate(doc, pool);
    const image = st.template.spec.image;
    const cached = this.#metadata.get(image);
    if (cached) return cached;
    const member = st.ready[0] ?? st.allocated.values().next().value;
    if (!member) {
      throw new PoolNotReadyError(
        pool.name,
        "no session has started yet to read the installed runtimes from; retry shortly.",
      );
    }
    const fetched = agentOf(member).metadata();
    this.#metadata.set(image, fetched);
    fetched.catch(() => this.#metadata.delete(image));
    return fetched;
  }

  /** Refuses a pool that could never run within the server-wide sandbox bounds. */
  admit(doc: PoolDoc): void {
    const unsupported = this.#runtimes === undefined ? undefined : runtimeUnavailable(doc, this.#runtimes);
    if (unsupported !== undefined) throw new RuntimeUnsupportedError(unsupported);
    const reason = this.#d.capacity.unsatisfiable(
      doc.properties.scaleConfiguration.maxConcurrentSessions,
      sessionMemoryBytes(doc, this.#d.defaults),
    );
    if (reason !== undefined) throw new PoolExceedsServerCapacityError(reason);
  }

  counts(poolKey: string): { ready: number; allocated: number; pending: number } {
    const st = this.#pools.get(poolKey);
    return {
      ready: st?.ready.length ?? 0,
      allocated: st?.allocated.size ?? 0,
      pending: (st?.warmPending ?? 0) + (st?.coldPending ?? 0),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#reaper) clearInterval(this.#reaper);
    for (const st of this.#pools.values()) if (st.refillTimer) clearTimeout(st.refillTimer);
    if (this.#prober) clearInterval(this.#prober);
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#unwatch?.();
    await Promise.allSettled([this.#engineCheck, this.#resyncing]);
    const states = [...this.#pools.values()];
    for (const st of states) {
      st.controller.abort();
      if (st.retryTimer) clearTimeout(st.retryTimer);
    }
    await Promise.allSettled(states.map((st) => st.reconciling));
    await Promise.allSettled([...this.#inflight.values()]);
    // Sandboxes keep running: a restarted server adopts them. Only the connections close.
    for (const m of this.#bySandbox.values()) m.agent?.close();
  }

  // ---- internals ------------------------------------------------------------------------------------------

  #state(key: string): PoolState {
    let st = this.#pools.get(key);
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
      };
      this.#pools.set(key, st);
    }
    return st;
  }

  #ownLabels(): Record<string, string> {
    return { [LABEL_MANAGED]: MANAGED_VALUE, [LABEL_INSTANCE]: this.#instanceId };
  }

  #poolDoc(poolKey: string): { pool: StoredPool; doc: PoolDoc } {
    const pool = this.#d.store.getPool(poolKey);
    const name = poolKey.split("/")[2] ?? poolKey;
    if (!pool) throw new SessionPoolNotFoundError(name);
    const doc = pool.doc as unknown as PoolDoc;
    if (doc.properties.provisioningState === "Deleting") throw new SessionPoolNotFoundError(name);
    return { pool, doc };
  }

  async #allocate(poolKey: string, identifier: string, signal?: AbortSignal): Promise<Acquired> {
    const started = performance.now();
    const { pool, doc } = this.#poolDoc(poolKey);
    const st = this.#state(poolKey);
    if (doc.properties.provisioningState === "Failed") {
      throw new PoolNotReadyError(
        pool.name,
        doc.properties.provisioningError?.message ?? "its provisioning failed.",
      );
    }
    // Said on the first session that is really handed out (an attempt that fails keeps it for the next).
    const replaced = st.replaced.has(identifier);
    const metricsPool = poolKey;
    // The limit holds for warm claims too: a refill that finished after cold starts filled the pool is surplus.
    const max = doc.properties.scaleConfiguration.maxConcurrentSessions;
    if (st.allocated.size + st.coldPending >= max) {
      this.#d.metrics.claims.inc({ pool: metricsPool, result: "limit" });
      throw new SessionLimitError(pool.name, max, 5);
    }
    // Warm claim: no engine call on this path.
    const index = st.ready.findIndex((m) => st.template !== undefined && m.templateHash === st.template.hash);
    if (index >= 0) {
      const member = st.ready.splice(index, 1)[0]!;
      const warm = { ...member.rec };
      try {
        this.#assign(member, identifier, doc);
      } catch (err) {
        // Not recorded as allocated: it stays warm, untouched, rather than be handed out unrecorded (a restart
        // would offer a sandbox someone used to the next identifier).
        Object.assign(member.rec, warm);
        st.ready.splice(index, 0, member);
        throw err;
      }
      st.allocated.set(identifier, member);
      st.replaced.delete(identifier);
      const ms = performance.now() - started;
      this.#d.metrics.claims.inc({ pool: metricsPool, result: "hit" });
      this.#d.metrics.allocationSeconds.observe({ pool: metricsPool, result: "hit" }, ms / 1000);
      this.#publish(st);
      this.#refillSoon(st);
      return { member, fresh: true, replaced, allocationMs: ms };
    }
    // Cold start. Make room first if warm members hold the capacity (e.g. they run an outdated template).
    st.coldPending++;
    this.#publish(st);
    try {
      while (st.allocated.size + st.coldPending + st.ready.length > max && st.ready.length > 0) {
        await this.#end(st.ready.shift()!, "replaced");
      }
      const template = st.template ?? (await this.#resolveTemplate(doc, pool, signal));
      st.template = template;
      const member = await this.#createMember(pool, template, signal);
      try {
        this.#assign(member, identifier, doc);
      } catch (err) {
        await this.#destroy(member);
        throw err;
      }
      st.allocated.set(identifier, member);
      st.replaced.delete(identifier);
      const ms = performance.now() - started;
      this.#d.metrics.claims.inc({ pool: metricsPool, result: "miss" });
      this.#d.metrics.allocationSeconds.observe({ pool: metricsPool, result: "miss" }, ms / 1000);
      return { member, fresh: true, replaced, allocationMs: ms };
    } catch (err) {
      if (isSessionPoolError(err)) throw err;
      const storage = storageFailure(err);
      if (storage) throw storage;
      throw new SessionStartError(`A session could not be started: ${(err as Error).message}`, err);
    } finally {
      st.coldPending--;
      this.#publish(st);
    }
  }

  #assign(member: Member, identifier: string, doc: PoolDoc): void {
    const now = this.#d.now();
    member.rec.identifier = identifier;
    member.rec.state = "allocated";
    member.rec.allocatedAt = now.toISOString();
    member.rec.lastAccessedAt = now.toISOString();
    member.rec.expiresAt = sessionExpiry(doc, { allocatedAt: now, lastAccessedAt: now }).toISOString();
    this.#d.store.putSession(member.rec);
    member.persistedAccessMs = now.getTime();
  }

  /**
   * The runtimes sandboxes run under, settled against the engine the first time it answers (`--sandbox-runtime
   * auto` means gVisor when the engine has it). RuntimeConfigError when the choice cannot be met.
   */
  async #sandboxRuntimes(options: { signal?: AbortSignal } = {}): Promise<SandboxRuntimes> {
    if (this.#runtimes !== undefined) return this.#runtimes;
    const runtimes = chooseSandboxRuntimes(this.#d.defaults.runtime, await this.#d.driver.runtimes(options));
    if (this.#runtimes === undefined) {
      this.#runtimes = runtimes;
      this.#d.metrics.sandboxRuntime.set({ runtime: runtimes.name }, 1);
      if (runtimes.warning !== undefined) this.#d.logger.warn(runtimes.warning);
      else
        this.#d.logger.info(
          { runtime: runtimes.name, networked: runtimes.networked ?? runtimes.networkedUnavailable },
          runtimes.name === GVISOR
            ? "sandboxes run under gVisor (runsc)"
            : `sandboxes run under ${runtimes.name}`,
        );
    }
    return this.#runtimes;
  }

  /** The runtime sandboxes run under ("runsc" is gVisor), once the engine has answered. */
  get sandboxRuntime(): string | undefined {
    return this.#runtimes?.name;
  }

  async #resolveTemplate(
    doc: PoolDoc,
    pool: StoredPool,
    signal?: AbortSignal,
    options: { pull?: boolean } = {},
  ): Promise<SandboxTemplate> {
    let ref: string;
    try {
      ref = imageRefFor(doc, this.#d.defaults);
    } catch (err) {
      if (err instanceof UnsupportedContainerTypeError) throw new PoolNotReadyError(pool.name, err.message);
      throw err;
    }
    const call = signal ? { signal } : {};
    const custom = doc.properties.containerType === "CustomContainer";
    const secrets = custom ? this.#d.secrets(pool.key) : new Map<string, string>();
    let image = options.pull ? undefined : await this.#d.driver.getImage(ref, call);
    if (!image && custom) {
      try {
        image = await this.#d.driver.pullImage(ref, registryAuth(doc, secrets), call);
      } catch (err) {
        // Air-gapped or locally built: an image the engine already has serves when no registry has it.
        // A refused credential is never papered over.
        if (!(err instanceof ImageNotFoundError)) throw err;
        image = await this.#d.driver.getImage(ref, call);
        if (!image) throw err;
        this.#d.logger.warn(
          { pool: pool.key, image: ref },
          "image not pullable; using the engine's local copy",
        );
      }
    }
    if (!image) {
      throw new SessionPoolError(
        "SandboxImageMissing",
        503,
        `The sandbox image '${ref}' is not present in the Docker engine; build it with 'bash scripts/build-images.sh' (run by 'bash scripts/setup.sh').`,
      );
    }
    return templateFor(doc, this.#d.defaults, await this.#sandboxRuntimes(call), image.id, secrets);
  }

  /**
   * Refills after a claim, a moment later: creating a sandbox costs the engine and this process CPU that the
   * claimed session's first execution would otherwise compete with (2 cores). Claims in a burst share one refill.
   */
  #refillSoon(st: PoolState): void {
    if (st.refillTimer) return;
    st.refillTimer = setTimeout(() => {
      st.refillTimer = undefined;
      void this.#reconcile(st.key);
    }, REFILL_DELAY_MS);
    st.refillTimer.unref();
  }

  #readyTarget(doc: PoolDoc, st: PoolState): number {
    const scale = doc.properties.scaleConfiguration;
    return Math.max(
      0,
      Math.min(scale.readySessionInstances, scale.maxConcurrentSessions - st.allocated.size - st.coldPending),
    );
  }

  #reconcile(poolKey: string): Promise<void> {
    const st = this.#state(poolKey);
    if (this.#closed || st.controller.signal.aborted) return Promise.resolve();
    if (st.reconciling) {
      st.again = true;
      return st.reconciling;
    }
    st.reconciling = (async () => {
      do {
        st.again = false;
        await this.#reconcileOnce(st);
      } while (st.again && !this.#closed && !st.controller.signal.aborted);
    })()
      .catch((err) => {
        this.#d.logger.warn({ pool: poolKey, err }, "reconcile failed");
      })
      .finally(() => {
        st.reconciling = undefined;
      });
    return st.reconciling;
  }

  async #reconcileOnce(st: PoolState): Promise<void> {
    // Until the last run's sandboxes are adopted, they would be created a second time.
    if (this.#adoptionPending) return;
    const stored = this.#d.store.getPool(st.key);
    if (!stored) return;
    const doc = stored.doc as unknown as PoolDoc;
    if (doc.properties.provisioningState === "Deleting") return;
    const signal = st.controller.signal;
    let template: SandboxTemplate;
    try {
      const cached = st.template;
      const fresh =
        cached !== undefined &&
        st.templateFor?.generation === stored.generation &&
        performance.now() - st.templateFor.atMs < TEMPLATE_TTL_MS;
      template = fresh ? cached : await this.#resolveTemplate(doc, stored, signal);
      if (!fresh) st.templateFor = { generation: stored.generation, atMs: performance.now() };
      st.template = template;
    } catch (err) {
      st.lastError = isSessionPoolError(err) ? err : new SessionStartError((err as Error).message, err);
      return;
    }
    const hash = template.hash;
    // Roll warm members built from an older template.
    for (const m of st.ready.filter((r) => r.templateHash !== hash)) await this.#end(m, "replaced");
    const target = this.#readyTarget(doc, st);
    while (st.ready.length + st.warmPending > target && st.ready.length > 0)
      await this.#end(st.ready.pop()!, "scaled-down");
    const need = target - st.ready.length - st.warmPending;
    if (need <= 0) return;
    st.warmPending += need;
    this.#publish(st);
    const results = await Promise.allSettled(
      Array.from({ length: need }, async () => {
        try {
          const member = await this.#createMember(stored, template, signal);
          // Cold starts may have taken the room meanwhile: a sandbox beyond the target is not kept warm.
          if (signal.aborted || this.#closed || st.ready.length >= this.#readyTarget(doc, st)) {
            await this.#destroy(member);
            return;
          }
          st.ready.push(member);
        } finally {
          st.warmPending--;
          this.#publish(st);
        }
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed && !signal.aborted) {
      st.failures++;
      const err = failed.reason;
      st.lastError = isSessionPoolError(err)
        ? err
        : new SessionStartError(
            `A sandbox for the pool could not be started: ${(err as Error).message}`,
            err,
          );
      this.#d.metrics.sandboxFailures.inc({ pool: st.key, reason: "start" });
      this.#d.logger.warn({ pool: st.key, err: st.lastError.message }, "warm sandbox failed to start");
      // A pool whose provisioning failed waits for its next PUT or PATCH instead of crash-looping sandboxes.
      const state = (this.#d.store.getPool(st.key)?.doc as PoolDoc | undefined)?.properties.provisioningState;
      if (state === "Failed") return;
      // Back off before trying again so a broken image does not spin the engine.
      const delay = Math.min(30_000, 500 * 2 ** Math.min(st.failures, 6));
      if (st.retryTimer) clearTimeout(st.retryTimer);
      st.retryTimer = setTimeout(() => {
        st.retryTimer = undefined;
        void this.#reconcile(st.key);
      }, delay);
      st.retryTimer.unref();
    } else if (!failed) {
      st.failures = 0;
      st.lastError = undefined;
    }
  }

  async #acquireSlot(): Promise<void> {
    if (this.#createSlots > 0) {
      this.#createSlots--;
      return;
    }
    await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
  }

  #releaseSlot(): void {
    const next = this.#slotWaiters.shift();
    if (next) next();
    else this.#createSlots++;
  }

  async #createMember(pool: StoredPool, template: SandboxTemplate, signal?: AbortSignal): Promise<Member> {
    const memoryBytes = template.spec.memoryBytes;
    this.#d.capacity.reserve(memoryBytes); // before anything exists: a refusal leaves nothing to undo
    try {
      return await this.#createReserved(pool, template, memoryBytes, signal);
    } catch (err) {
      this.#d.capacity.release(memoryBytes);
      throw err;
    }
  }

  async #createReserved(
    pool: StoredPool,
    template: SandboxTemplate,
    memoryBytes: number,
    signal?: AbortSignal,
  ): Promise<Member> {
    const id = crypto.randomUUID();
    const custom = template.kind === "custom";
    const socketDir = custom ? undefined : join(this.#d.socketsDir, id);
    const rec: StoredSession = {
      id,
      poolKey: pool.key,
      identifier: undefined,
      state: "pending",
      sandboxId: undefined,
      generation: pool.generation,
      createdAt: this.#d.now().toISOString(),
      allocatedAt: undefined,
      lastAccessedAt: undefined,
      expiresAt: undefined,
    };
    // Recorded before the engine call: a crash mid-create leaves a record that adoption reconciles.
    this.#d.store.putSession(rec);
    const call = signal ? { signal } : {};
    let sandboxId: string | undefined;
    let address: string | undefined;
    let endpoint: AgentEndpoint | undefined;
    await this.#acquireSlot();
    try {
      // Listening before the sandbox starts: its agent attaches as soon as it runs, and it alone can attach
      // without a key then (no code of the session runs before the server sends some).
      if (socketDir) endpoint = await this.#openEndpoint(id, socketDir, template.spec.user, true);
      const info = await this.#d.driver.create(
        {
          ...template.spec,
          labels: buildLabels({
            pool: pool.key,
            session: id,
            instance: this.#instanceId,
            templateHash: template.hash,
            kind: template.kind,
            runtime: template.spec.runtime ?? "runc",
          }),
          ...(socketDir ? { agentSocketDir: socketDir } : {}),
        },
        call,
      );
      sandboxId = info.id;
      address = info.address;
      rec.sandboxId = sandboxId;
      this.#d.store.putSession(rec);
    } catch (err) {
      this.#releaseSlot();
      // The store write after the create can fail (disk full): the sandbox must not outlive its record.
      if (sandboxId !== undefined) await this.#removeSandbox(sandboxId);
      endpoint?.close();
      this.#forget(id);
      if (socketDir) await rm(socketDir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
    this.#releaseSlot();
    const member: Member = {
      rec,
      kind: template.kind,
      sandboxId,
      templateHash: template.hash,
      socketDir,
      agent: endpoint,
      address,
      port: template.targetPort,
      probeFailures: 0,
      // Liveness probing starts after the probe's initialDelaySeconds.
      nextProbeAt:
        performance.now() +
        (template.probes?.find((p) => p.type === "Liveness")?.initialDelaySeconds ?? 0) * 1000,
      inFlight: 0,
      persistedAccessMs: 0,
      heldMemoryBytes: 0, // held by #createMember until the member is returned
    };
    try {
      await this.#waitUntilServing(member, template, signal);
      rec.state = "ready";
      this.#d.store.putSession(rec);
      this.#bySandbox.set(sandboxId, member);
      member.heldMemoryBytes = memoryBytes;
      return member;
    } catch (err) {
      member.agent?.close();
      await this.#removeSandbox(sandboxId);
      this.#forget(id);
      if (socketDir) await rm(socketDir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }

  /** Code interpreters: the agent answers hello. Custom containers: the port accepts connections, probes pass. */
  async #waitUntilServing(member: Member, template: SandboxTemplate, signal?: AbortSignal): Promise<void> {
    if (member.kind === "code-interpreter") {
      await waitForAgent(member.agent!, {
        timeoutMs: this.#d.agentStartTimeoutMs,
        ...(signal ? { signal } : {}),
      });
      return;
    }
    const sandboxId = member.sandboxId;
    if (!member.address || !member.port) {
      throw new SessionStartError(
        "The custom container has no address on its network; is its network configured?",
      );
    }
    const open = await waitForPort(member.address, member.port, {
      deadlineMs: this.#d.agentStartTimeoutMs,
      ...(signal ? { signal } : {}),
      stillRunning: async () => (await this.#d.driver.inspect(sandboxId))?.state === "running",
    });
    if (!open) {
      const info = await this.#d.driver.inspect(sandboxId);
      throw new SessionStartError(
        info?.state === "running"
          ? `The container did not accept connections on its target port ${member.port} within ${this.#d.agentStartTimeoutMs / 1000} s.`
          : `The container exited (code ${info?.exitCode ?? "unknown"}) before serving on its target port ${member.port}.`,
      );
    }
    const startup = template.probes?.find((p) => p.type === "Startup");
    if (startup && !(await startupPasses(startup, member.address, signal))) {
      throw new SessionStartError("The container's Startup probe did not pass.");
    }
  }

  /** Runs due Liveness probes; a member failing failureThreshold times in a row is replaced. */
  async #checkLiveness(): Promise<void> {
    const now = performance.now();
    for (const st of this.#pools.values()) {
      const probe = st.template?.probes?.find((p) => p.type === "Liveness");
      if (!probe) continue;
      for (const m of [...st.ready, ...st.allocated.values()]) {
        if (m.kind !== "custom" || !m.address || m.nextProbeAt > now) continue;
        m.nextProbeAt = now + (probe.periodSeconds ?? 10) * 1000;
        if (await probeOnce(probe, m.address)) {
          m.probeFailures = 0;
          continue;
        }
        m.probeFailures++;
        if (m.probeFailures >= (probe.failureThreshold ?? 3)) {
          this.#d.metrics.sandboxFailures.inc({ pool: st.key, reason: "liveness" });
          if (m.rec.identifier !== undefined && st.allocated.get(m.rec.identifier) === m)
            st.replaced.add(m.rec.identifier);
          await this.#end(m, "unhealthy");
        }
      }
    }
  }

  async #end(member: Member, reason: string): Promise<void> {
    const st = this.#pools.get(member.rec.poolKey);
    if (st) {
      const i = st.ready.indexOf(member);
      if (i >= 0) st.ready.splice(i, 1);
      if (member.rec.identifier !== undefined && st.allocated.get(member.rec.identifier) === member) {
        st.allocated.delete(member.rec.identifier);
        this.#d.metrics.sessionsEnded.inc({ pool: member.rec.poolKey, reason });
      }
      this.#publish(st);
    }
    await this.#destroy(member);
    this.#d.logger.debug({ pool: member.rec.poolKey, session: member.rec.id, reason }, "session ended");
    if (st && !this.#closed && !st.controller.signal.aborted && reason !== "deleted")
      void this.#reconcile(st.key);
  }

  async #destroy(member: Member): Promise<void> {
    this.#bySandbox.delete(member.sandboxId);
    if (member.heldMemoryBytes > 0) {
      this.#d.capacity.release(member.heldMemoryBytes);
      member.heldMemoryBytes = 0;
    }
    member.agent?.close();
    this.#forget(member.rec.id);
    await this.#removeSandbox(member.sandboxId);
    if (member.socketDir) {
      // Under the data dir: a read-only or failing disk must not turn an ended session into a crash.
      await rm(member.socketDir, { recursive: true, force: true }).catch((err) =>
        this.#d.logger.warn({ session: member.rec.id, err }, "could not remove a session's socket directory"),
      );
    }
  }

  /** Removes a sandbox; a failure is logged, and orphan removal (by label, at start and resync) retries it. */
  async #removeSandbox(sandboxId: string): Promise<void> {
    await this.#d.driver.remove(sandboxId).catch((err) => {
      this.#d.logger.warn(
        { sandbox: sandboxId, err },
        "could not remove a sandbox; orphan removal will retry",
      );
    });
  }

  /** The socket a code-interpreter sandbox's agent attaches to, in its own directory (mounted read-only). */
  async #openEndpoint(
    sessionId: string,
    socketDir: string,
    user: string | undefined,
    trustFirstAttach: boolean,
  ): Promise<AgentEndpoint> {
    const [uid, gid] = user?.split(":").map(Number) ?? [];
    const owner = uid !== undefined && gid !== undefined ? { uid, gid } : undefined;
    await mkdir(socketDir, { recursive: true, mode: 0o700 });
    if (owner) await chown(socketDir, owner.uid, owner.gid);
    return AgentEndpoint.listen(join(socketDir, "agent.sock"), {
      key: agentKey(this.#d.agentSecret, sessionId),
      trustFirstAttach,
      ...(owner ? { owner } : {}),
      onRefused: (reason, refusals) => {
        // 1st, 2nd, 4th, 8th...: code in a loop cannot flood the log
        if ((refusals & (refusals - 1)) === 0)
          this.#d.logger.warn(
            { session: sessionId, reason, refusals },
            "refused an attach to a session's agent socket",
          );
      },
    });
  }

  /** Deletes a session record; a store that cannot be written (disk full) must not stop the sandbox's removal. */
  #forget(sessionId: string): void {
    try {
      this.#d.store.deleteSession(sessionId);
    } catch (err) {
      // A record left behind is dropped by the next start, which finds no sandbox for it.
      this.#d.logger.warn({ session: sessionId, err }, "could not delete a session record");
    }
  }

  #publish(st: PoolState): void {
    this.#d.metrics.readySessions.set({ pool: st.key }, st.ready.length);
    this.#d.metrics.allocatedSessions.set({ pool: st.key }, st.allocated.size);
    this.#d.metrics.pendingSessions.set({ pool: st.key }, st.warmPending + st.coldPending);
  }

  #onEvent(event: SandboxEvent): void {
    const member = this.#bySandbox.get(event.id);
    if (!member) return;
    if (event.type === "oom") {
      // A process inside was OOM-killed; the sandbox itself may well live on (the agent restarts its
      // interpreter). Only "die" and "destroy" mean the sandbox is gone.
      this.#d.metrics.sandboxFailures.inc({ pool: member.rec.poolKey, reason: "oom" });
      return;
    }
    if (event.type !== "die" && event.type !== "destroy") return;
    this.#sandboxGone(member, event.type);
  }

  /** A member's sandbox ended without us ending it (an event, or found gone on a resync). */
  #sandboxGone(member: Member, reason: string): void {
    const st = this.#pools.get(member.rec.poolKey);
    const identifier = member.rec.identifier;
    const allocated = st !== undefined && identifier !== undefined && st.allocated.get(identifier) === member;
    const doc = this.#d.store.getPool(member.rec.poolKey)?.doc as PoolDoc | undefined;
    const onExit =
      doc?.properties.dynamicPoolConfiguration.lifecycleConfiguration.lifecycleType === "OnContainerExit";
    if (allocated && onExit) {
      // OnContainerExit: the container's process exiting is how such a session ends.
      void this.#end(member, "exited");
      return;
    }
    if (allocated) st.replaced.add(identifier);
    this.#d.metrics.sandboxFailures.inc({ pool: member.rec.poolKey, reason });
    this.#d.logger.warn(
      { pool: member.rec.poolKey, session: member.rec.id, reason },
      "sandbox ended unexpectedly",
    );
    void this.#end(member, "died");
  }

  /**
   * Pings the engine; a change between up and down is logged and counted. Once it is back, sandboxes are
   * resynchronised, and again on every later check until that succeeds (the engine may answer a ping before it
   * can list containers).
   */
  #checkEngine(): Promise<void> {
    this.#engineCheck ??= (async () => {
      let error: string | undefined;
      try {
        await this.#d.driver.ping({ signal: AbortSignal.timeout(ENGINE_PING_TIMEOUT_MS) });
      } catch (err) {
        error = (err as Error).message;
      }
      if (this.#closed) return;
      const up = error === undefined;
      if (up !== this.#engine.up) {
        this.#engine = { up, since: this.#d.now().toISOString(), error };
        this.#d.metrics.engineUp.set(up ? 1 : 0);
        if (!up) {
          this.#d.logger.error(
            { err: error },
            "the container engine stopped answering; sessions are degraded",
          );
          return;
        }
        this.#d.logger.info({}, "the container engine answers again; resynchronising sandboxes");
        this.#resyncPending = true;
      } else {
        this.#engine.error = error;
      }
      if (up && this.#adoptionPending) {
        try {
          await this.#adoptSandboxes();
          this.#adoptionPending = false;
        } catch (err) {
          this.#d.logger.warn({ err }, "adopting sandboxes failed; trying again at the next check");
          return;
        }
      }
      if (up && this.#resyncPending && (await this.#resync("engine back", true))) this.#resyncPending = false;
    })().finally(() => {
      this.#engineCheck = undefined;
    });
    return this.#engineCheck;
  }

  /**
   * Re-reads what the engine runs after events may have been lost (its restart kills every sandbox): members
   * whose sandbox is no longer running end as died (their identifiers get fresh sessions, said so) and our
   * leftovers that are not running go. With `refill` (the engine is back) every pool also refills at once instead
   * of after its backoff. Resolves true when the engine could be read.
   */
  #resync(why: string, refill: boolean): Promise<boolean> {
    this.#resyncRefill ||= refill;
    if (this.#resyncing) {
      this.#resyncAgain = true;
      return this.#resyncing;
    }
    this.#resyncing = (async () => {
      do {
        this.#resyncAgain = false;
        const refillNow = this.#resyncRefill;
        this.#resyncRefill = false;
        if (this.#closed) return true;
        // Members known before the engine is asked: one registered meanwhile is not in its answer, and not lost.
        const known = [...this.#bySandbox.values()];
        const listed = await this.#d.driver.list(this.#ownLabels(), {
          signal: AbortSignal.timeout(30_000),
        });
        const running = new Set(listed.filter((s) => s.state === "running").map((s) => s.id));
        let gone = 0;
        for (const member of known) {
          if (running.has(member.sandboxId) || this.#bySandbox.get(member.sandboxId) !== member) continue;
          gone++;
          this.#sandboxGone(member, "lost");
        }
        // Only ended ones: a sandbox being created right now is not running yet either.
        const leftovers = listed.filter(
          (s) => (s.state === "exited" || s.state === "dead") && !this.#bySandbox.has(s.id),
        );
        await inBatches(leftovers, TEARDOWN_CONCURRENCY, (s) => this.#d.driver.remove(s.id).catch(() => {}));
        this.#d.logger.info({ why, gone, removed: leftovers.length }, "sandboxes resynchronised");
        if (!refillNow) continue;
        for (const st of this.#pools.values()) {
          if (st.retryTimer) clearTimeout(st.retryTimer);
          st.retryTimer = undefined;
          st.failures = 0;
          void this.#reconcile(st.key);
        }
      } while (this.#resyncAgain);
      return true;
    })()
      .catch((err) => {
        this.#d.logger.warn({ err, why }, "resynchronising sandboxes failed");
        return false;
      })
      .finally(() => {
        this.#resyncing = undefined;
      });
    return this.#resyncing;
  }

  /**
   * Start-up: the instance id, the event watch and the timers, then adoption of live sandboxes. An engine that
   * does not answer yet does not stop the server: it serves degraded (sessions answer 503, provisioning waits)
   * and adopts once the engine answers (#checkEngine).
   */
  async #begin(): Promise<void> {
    const { store, driver } = this.#d;
    this.#instanceId = store.getMeta("instance-id") ?? "";
    if (this.#instanceId === "") {
      this.#instanceId = crypto.randomUUID();
      store.setMeta("instance-id", this.#instanceId);
    }
    await mkdir(this.#d.socketsDir, { recursive: true, mode: 0o711 });
    this.#unwatch = driver.watch(
      this.#ownLabels(),
      (e) => this.#onEvent(e),
      () => void this.#resync("event stream resubscribed", false),
    );
    this.#reaper = setInterval(() => {
      this.reap().catch((err) => this.#d.logger.warn({ err }, "reaping expired sessions failed"));
    }, this.#d.reapIntervalMs);
    this.#reaper.unref();
    this.#prober = setInterval(() => {
      this.#checkLiveness().catch((err) => this.#d.logger.warn({ err }, "liveness probing failed"));
    }, this.#d.probeIntervalMs);
    this.#prober.unref();
    this.#watchdog = setInterval(() => void this.#checkEngine(), this.#d.engineCheckIntervalMs);
    this.#watchdog.unref();
    try {
      await this.#adoptSandboxes();
    } catch (err) {
      if (!(err instanceof RuntimeUnavailableError)) throw err;
      this.#adoptionPending = true;
      this.#engine = { up: false, since: this.#d.now().toISOString(), error: err.message };
      this.#d.metrics.engineUp.set(0);
      this.#d.logger.error(
        { err: err.message },
        "the container engine does not answer: serving degraded until it does, then adopting its sandboxes",
      );
    }
  }

  /** Adopts the engine's live sandboxes of this instance that the store knows; removes the others. */
  async #adoptSandboxes(): Promise<void> {
    const { store, driver } = this.#d;
    await this.#sandboxRuntimes(); // the first time the engine answers: a runtime it lacks stops the start here
    const sandboxes = await driver.list(this.#ownLabels());
    const records = new Map(store.allSessions().map((s) => [s.id, s]));
    const adopted = new Set<string>();
    await Promise.all(
      sandboxes.map(async (sb) => {
        const rec = records.get(sb.labels[LABEL_SESSION] ?? "");
        const pool = rec ? store.getPool(rec.poolKey) : undefined;
        if (!rec || !pool || sb.state !== "running" || rec.sandboxId !== sb.id) {
          await driver.remove(sb.id).catch(() => {});
          return;
        }
        const kind: SandboxKind = sb.labels[LABEL_KIND] === "custom" ? "custom" : "code-interpreter";
        const doc = pool.doc as unknown as PoolDoc;
        const member: Member = {
          rec,
          kind,
          sandboxId: sb.id,
          templateHash: sb.labels[LABEL_TEMPLATE_HASH] ?? "",
          socketDir: kind === "custom" ? undefined : join(this.#d.socketsDir, rec.id),
          agent: undefined,
          address: sb.address,
          port: doc.properties.customContainerTemplate?.ingress.targetPort,
          probeFailures: 0,
          nextProbeAt: 0,
          inFlight: 0,
          persistedAccessMs: 0,
          heldMemoryBytes: 0,
        };
        try {
          if (kind === "custom") {
            if (
              !member.address ||
              !member.port ||
              !(await waitForPort(member.address, member.port, { deadlineMs: 10_000 }))
            ) {
              throw new Error("the container does not serve on its target port");
            }
          } else {
            member.agent = await this.#openEndpoint(rec.id, member.socketDir!, SANDBOX_UID, false);
            await waitForAgent(member.agent, { timeoutMs: 10_000 });
          }
          const st = this.#state(rec.poolKey);
          this.#bySandbox.set(sb.id, member);
          member.heldMemoryBytes = sessionMemoryBytes(doc, this.#d.defaults);
          this.#d.capacity.adopt(member.heldMemoryBytes);
          if (rec.state === "allocated" && rec.identifier !== undefined)
            st.allocated.set(rec.identifier, member);
          else {
            rec.state = "ready";
            store.putSession(rec);
            st.ready.push(member);
          }
          adopted.add(rec.id);
          this.#publish(st);
        } catch (err) {
          member.agent?.close();
          this.#d.logger.warn(
            { session: rec.id, err },
            "could not reconnect to a sandbox's agent; removing it",
          );
          await driver.remove(sb.id).catch(() => {});
        }
      }),
    );
    for (const rec of records.values()) {
      if (adopted.has(rec.id)) continue;
      store.deleteSession(rec.id);
      await rm(join(this.#d.socketsDir, rec.id), { recursive: true, force: true });
    }
    this.#d.logger.info(
      { adopted: adopted.size, removed: sandboxes.length - adopted.size },
      "sandboxes adopted after start",
    );
  }
}

function registryAuth(doc: PoolDoc, secrets: ReadonlyMap<string, string>): RegistryAuth | undefined {
  const rc = doc.properties.customContainerTemplate?.registryCredentials;
  if (!rc?.server || !rc.username || !rc.passwordSecretRef) return undefined;
  return { server: rc.server, username: rc.username, password: secrets.get(rc.passwordSecretRef) ?? "" };
}

/** The agent of a code-interpreter session; custom containers have none (their traffic is proxied). */
export function agentOf(member: Member): AgentClient {
  if (member.agent === undefined) {
    throw new SessionPoolError(
      "DynamicApisNotAllowed",
      400,
      "This is a custom container session: its requests are proxied to the container, it has no code interpreter.",
    );
  }
  return member.agent.current();
}
