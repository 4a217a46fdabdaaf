// Sessions, as the rest of the server sees them: PoolProvisioner for the pool service (provisioning means "image
// present and ready sessions warm"), and claims, lookups and ends for the data plane. The work is done by the
// parts it wires together over one shared SessionContext:
//   session-allocator.ts     claims (warm or cold, single-flight per identifier), the idle clock
//   warm-pool-reconciler.ts  keeps readySessionInstances warm without over-creating
//   sandbox-factory.ts       templates, creating and removing sandboxes, the agent's socket
//   sandbox-adoption.ts      adopting the last run's sandboxes, resynchronising with the engine
//   engine-watch.ts          engine up/down, sandbox events
//   liveness-prober.ts       custom containers' liveness probes
//   session-reaper.ts        cooldown and max-alive expiry
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { MetadataResponse } from "../../agent-channel/agent-client.ts";
import { RuntimeUnavailableError } from "../../runtime/errors.ts";
import type { StoredPool } from "../../store/store.ts";
import { PoolExceedsServerCapacityError, PoolNotReadyError, RuntimeUnsupportedError } from "../errors.ts";
import type { PoolDoc } from "../pools/pool-doc.ts";
import type { PoolProvisioner } from "../pools/pool-service.ts";
import { type EngineHealth, EngineWatch } from "./engine-watch.ts";
import { LivenessProber } from "./liveness-prober.ts";
import { SandboxAdoption } from "./sandbox-adoption.ts";
import { SandboxFactory } from "./sandbox-factory.ts";
import { runtimeUnavailable, sessionMemoryBytes } from "./sandbox-template.ts";
import { type Acquired, SessionAllocator } from "./session-allocator.ts";
import {
  agentOf,
  type FleetShare,
  inBatches,
  type LiveSandbox,
  type PoolState,
  SessionContext,
  type SessionManagerDeps,
} from "./session-context.ts";
import type { RequestedEnvironment } from "./session-environment.ts";
import { SessionReaper } from "./session-reaper.ts";
import { measureUsage, type SessionUsage } from "./session-usage.ts";
import { WarmPoolReconciler } from "./warm-pool-reconciler.ts";

export type { EngineHealth } from "./engine-watch.ts";
export type { Acquired } from "./session-allocator.ts";
export type { LiveSandbox, SessionManagerDeps } from "./session-context.ts";
export { agentOf } from "./session-context.ts";
export type { SessionUsage } from "./session-usage.ts";

const DEPROVISION_CONCURRENCY = 8;

export class SessionManager implements PoolProvisioner {
  readonly #ctx: SessionContext;
  readonly #factory: SandboxFactory;
  readonly #reconciler: WarmPoolReconciler;
  readonly #allocator: SessionAllocator;
  readonly #adoption: SandboxAdoption;
  readonly #engine: EngineWatch;
  readonly #liveness: LivenessProber;
  readonly #reaper: SessionReaper;
  readonly #metadata = new Map<string, Promise<MetadataResponse>>();
  #started: Promise<void> | undefined;
  #timers: NodeJS.Timeout[] = [];
  #unwatch: (() => void) | undefined;

  constructor(deps: SessionManagerDeps) {
    const ctx = new SessionContext(deps);
    const end = (live: LiveSandbox, reason: string) => this.#end(live, reason);
    const gone = (live: LiveSandbox, reason: string) =>
      void this.#sandboxLost(live, reason).catch((err) =>
        this.#ctx.d.logger.error({ err, session: live.rec.id }, "could not end a lost sandbox's session"),
      );
    this.#ctx = ctx;
    this.#factory = new SandboxFactory(ctx);
    this.#reconciler = new WarmPoolReconciler(ctx, this.#factory, end);
    this.#allocator = new SessionAllocator(ctx, this.#factory, this.#reconciler, end);
    this.#adoption = new SandboxAdoption(ctx, this.#factory, this.#reconciler, gone);
    this.#engine = new EngineWatch(ctx, this.#adoption, gone);
    this.#liveness = new LivenessProber(ctx, end);
    this.#reaper = new SessionReaper(ctx, end);
  }

  /** The engine's health as last checked (every engineCheckIntervalMs). */
  engineHealth(): EngineHealth {
    return this.#engine.health;
  }

  get instanceId(): string {
    return this.#ctx.instanceId;
  }

  /** The runtime sandboxes run under ("runsc" is gVisor), once the engine has answered. */
  get sandboxRuntime(): string | undefined {
    return this.#factory.sandboxRuntime;
  }

  /** Adopts live sandboxes, removes orphans, starts the timers. Call once before serving. */
  start(): Promise<void> {
    this.#started ??= this.#begin();
    return this.#started;
  }

  /**
   * Start-up: the instance id, the event watch and the timers, then adoption of live sandboxes. An engine that
   * does not answer yet does not stop the server: it serves degraded (sessions answer 503, provisioning waits)
   * and adopts once the engine answers (EngineWatch).
   */
  async #begin(): Promise<void> {
    const ctx = this.#ctx;
    const { store, driver, logger } = ctx.d;
    ctx.instanceId = ctx.d.instanceId || ((await store.getMeta("instance-id")) ?? "");
    if (ctx.instanceId === "") {
      ctx.instanceId = crypto.randomUUID();
      await store.setMeta("instance-id", ctx.instanceId);
    }
    await mkdir(ctx.d.socketsDir, { recursive: true, mode: 0o711 });
    this.#unwatch = driver.watch(
      ctx.ownLabels(),
      (e) => this.#engine.onEvent(e),
      () => void this.#adoption.resync("event stream resubscribed", false),
    );
    const every = (ms: number, what: string, fn: () => Promise<unknown>) => {
      const timer = setInterval(() => {
        fn().catch((err) => logger.warn({ err }, `${what} failed`));
      }, ms);
      timer.unref();
      this.#timers.push(timer);
    };
    every(ctx.d.reapIntervalMs, "reaping expired sessions", () => this.#reaper.endExpired());
    every(ctx.d.probeIntervalMs, "liveness probing", () => this.#liveness.check());
    every(ctx.d.engineCheckIntervalMs, "checking the engine", () => this.#engine.check());
    try {
      await this.#adoption.adopt();
    } catch (err) {
      if (!(err instanceof RuntimeUnavailableError)) throw err;
      ctx.adoptionPending = true;
      this.#engine.markDown(err.message);
      logger.error(
        { err: err.message },
        "the container engine does not answer: serving degraded until it does, then adopting its sandboxes",
      );
    }
  }

  // ---- PoolProvisioner ----------------------------------------------------------------------------------------

  async provision(pool: StoredPool, signal: AbortSignal): Promise<void> {
    await this.start();
    await this.#ctx.untilAdopted(signal);
    await this.#reconciler.untilWarm(pool, signal);
  }

  async deprovision(poolKey: string, signal?: AbortSignal): Promise<void> {
    await this.start();
    await this.#ctx.untilAdopted(signal);
    const { d, pools } = this.#ctx;
    const st = pools.get(poolKey);
    if (st) {
      st.controller.abort();
      if (st.retryTimer) clearTimeout(st.retryTimer);
      await st.reconciling?.catch(() => {});
      if (st.refillTimer) clearTimeout(st.refillTimer);
      await inBatches([...st.ready, ...st.allocated.values()], DEPROVISION_CONCURRENCY, (m) =>
        this.#end(m, "deleted"),
      );
      pools.delete(poolKey);
    }
    // Anything else labelled for the pool (a creation in flight, a sandbox from before a crash) goes too.
    const leftovers = await d.driver.list({ ...this.#ctx.ownLabels(), "io.sessionpool.pool": poolKey });
    await inBatches(leftovers, DEPROVISION_CONCURRENCY, (s) => d.driver.remove(s.id));
    for (const s of await d.store.listSessions(poolKey)) {
      if (!this.#ctx.owns(s)) continue;
      await d.store.deleteSession(s.id);
      await rm(join(d.socketsDir, s.id), { recursive: true, force: true });
    }
  }

  /** Refuses a pool this server could never run: its runtime cannot carry it, or it exceeds the capacity. */
  admit(doc: PoolDoc): void {
    const runtimes = this.#factory.settledRuntimes;
    const unsupported = runtimes === undefined ? undefined : runtimeUnavailable(doc, runtimes);
    if (unsupported !== undefined) throw new RuntimeUnsupportedError(unsupported);
    const { capacity, defaults } = this.#ctx.d;
    const reason = capacity.unsatisfiable(
      doc.properties.scaleConfiguration.maxConcurrentSessions,
      sessionMemoryBytes(doc, defaults),
    );
    if (reason !== undefined) throw new PoolExceedsServerCapacityError(reason);
  }

  counts(poolKey: string): { ready: number; allocated: number; pending: number } {
    const st = this.#ctx.pools.get(poolKey);
    return {
      ready: st?.ready.length ?? 0,
      allocated: st?.allocated.size ?? 0,
      pending: (st?.warmPending ?? 0) + (st?.coldPending ?? 0),
    };
  }

  // ---- Fleet ------------------------------------------------------------------------------------------------

  /** Joins a fleet: pools keep this server's share of their ready sandboxes, and limits count every server's. */
  joinFleet(fleet: FleetShare): void {
    this.#ctx.fleet = fleet;
    this.reconcileAll();
  }

  /** Ready and allocated sessions per pool, for the fleet's heartbeat. */
  countsByPool(): { ready: Record<string, number>; allocated: Record<string, number> } {
    const ready: Record<string, number> = {};
    const allocated: Record<string, number> = {};
    for (const st of this.#ctx.pools.values()) {
      ready[st.key] = st.ready.length;
      allocated[st.key] = st.allocated.size;
    }
    return { ready, allocated };
  }

  /** Whether this server holds the identifier's session now. */
  holds(poolKey: string, identifier: string): boolean {
    return this.#ctx.pools.get(poolKey)?.allocated.has(identifier) ?? false;
  }

  /** The identifier's session was lost with another server: its next session here says it replaced one. */
  markReplaced(poolKey: string, identifier: string): void {
    this.#ctx.state(poolKey).replaced.add(identifier);
  }

  /**
   * A fleet took this server for gone and started some of its sessions afresh elsewhere: ends the ones allocated
   * before `before` (epoch ms) whose records `isOwn` no longer finds. Returns how many it ended.
   */
  async endMoved(isOwn: (sessionId: string) => boolean, before: number): Promise<number> {
    const moved: LiveSandbox[] = [];
    for (const st of this.#ctx.pools.values()) {
      for (const live of st.allocated.values()) {
        const at = Date.parse(live.rec.allocatedAt ?? live.rec.createdAt);
        if (at < before && !isOwn(live.rec.id)) moved.push(live);
      }
    }
    await Promise.all(moved.map((live) => this.#end(live, "moved")));
    return moved.length;
  }

  /** Brings every pool this server knows to its ready target again (a fleet's members changed). */
  reconcileAll(): void {
    if (this.#ctx.closed) return;
    for (const key of this.#ctx.pools.keys()) void this.#reconciler.reconcile(key);
  }

  // ---- Data plane -----------------------------------------------------------------------------------------

  /** The session for `identifier`, allocating one on first use. */
  async acquire(poolKey: string, identifier: string, signal?: AbortSignal): Promise<Acquired> {
    await this.start();
    return this.#allocator.acquire(poolKey, identifier, signal);
  }

  /** `PUT /session`: claims the identifier's session with `env` applied, or finds it running with the same. */
  async claim(
    poolKey: string,
    identifier: string,
    env: RequestedEnvironment,
    signal?: AbortSignal,
  ): Promise<Acquired> {
    await this.start();
    return this.#allocator.claim(poolKey, identifier, env, signal);
  }

  /** The names of the pool's secrets (what a `secretRef` may name). */
  async secretNames(poolKey: string): Promise<Set<string>> {
    return new Set((await this.#ctx.d.secrets(poolKey)).keys());
  }

  /** The allocated session for `identifier`, or undefined; never allocates. */
  find(poolKey: string, identifier: string): LiveSandbox | undefined {
    return this.#allocator.find(poolKey, identifier);
  }

  list(poolKey: string): LiveSandbox[] {
    return this.#allocator.list(poolKey);
  }

  /** A request that stays open (a proxied stream, a WebSocket) begins; pair with endRequest. */
  beginRequest(live: LiveSandbox): void {
    this.#allocator.beginRequest(live);
  }

  endRequest(live: LiveSandbox): void {
    this.#allocator.endRequest(live);
  }

  /** Every request resets the idle clock (Timed pools). */
  touch(live: LiveSandbox): void {
    this.#allocator.touch(live);
  }

  /** What the session costs now: CPU seconds, memory and /mnt/data bytes (see session-usage.ts). */
  async usage(live: LiveSandbox): Promise<SessionUsage> {
    return measureUsage(this.#ctx.d.driver, live, this.#ctx.d.now);
  }

  /** Ends the identifier's session now; false when there was none. */
  async stop(poolKey: string, identifier: string, reason = "stopped"): Promise<boolean> {
    await this.start();
    return this.#allocator.stop(poolKey, identifier, reason);
  }

  /** What the pool's sandboxes really have installed, read from a running sandbox once per image. */
  async metadata(poolKey: string): Promise<MetadataResponse> {
    await this.start();
    this.#ctx.requireAdopted();
    const { pool, doc } = await this.#ctx.poolDoc(poolKey);
    const st = this.#ctx.state(poolKey);
    st.template ??= await this.#factory.resolveTemplate(doc, pool);
    const image = st.template.spec.image;
    const cached = this.#metadata.get(image);
    if (cached) return cached;
    const live = st.ready[0] ?? st.allocated.values().next().value;
    if (!live) {
      throw new PoolNotReadyError(
        pool.name,
        "no session has started yet to read the installed runtimes from; retry shortly.",
      );
    }
    const fetched = agentOf(live).metadata();
    this.#metadata.set(image, fetched);
    fetched.catch(() => this.#metadata.delete(image));
    return fetched;
  }

  /** Stops the timers and background work; sandboxes keep running (a restarted server adopts them). */
  async close(): Promise<void> {
    const ctx = this.#ctx;
    if (ctx.closed) return;
    ctx.closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    for (const st of ctx.pools.values()) if (st.refillTimer) clearTimeout(st.refillTimer);
    this.#unwatch?.();
    await Promise.allSettled([this.#engine.checking, this.#adoption.resyncing]);
    const states: PoolState[] = [...ctx.pools.values()];
    for (const st of states) {
      st.controller.abort();
      if (st.retryTimer) clearTimeout(st.retryTimer);
    }
    await Promise.allSettled(states.map((st) => st.reconciling));
    await Promise.allSettled(this.#allocator.pending);
    // Only the connections close.
    for (const m of ctx.bySandbox.values()) void m.agent?.close();
  }

  // ---- ending sessions ------------------------------------------------------------------------------------

  /** Ends a live sandbox's session: out of its pool's books, its sandbox removed, the pool refilled. */
  async #end(live: LiveSandbox, reason: string): Promise<void> {
    const ctx = this.#ctx;
    const st = ctx.pools.get(live.rec.poolKey);
    if (st) {
      const i = st.ready.indexOf(live);
      if (i >= 0) st.ready.splice(i, 1);
      if (live.rec.identifier !== undefined && st.allocated.get(live.rec.identifier) === live) {
        st.allocated.delete(live.rec.identifier);
        ctx.d.metrics.sessionsEnded.inc({ pool: live.rec.poolKey, reason });
      }
      ctx.publish(st);
    }
    await this.#factory.remove(live);
    ctx.d.logger.debug({ pool: live.rec.poolKey, session: live.rec.id, reason }, "session ended");
    if (st && !ctx.closed && !st.controller.signal.aborted && reason !== "deleted")
      void this.#reconciler.reconcile(st.key);
  }

  /** A live sandbox ended without us ending it (an event, or found gone on a resync). */
  async #sandboxLost(live: LiveSandbox, reason: string): Promise<void> {
    const ctx = this.#ctx;
    const lifecycle = (await ctx.docOf(live.rec.poolKey))?.properties.dynamicPoolConfiguration
      .lifecycleConfiguration;
    const st = ctx.pools.get(live.rec.poolKey);
    const identifier = live.rec.identifier;
    const allocated = st !== undefined && identifier !== undefined && st.allocated.get(identifier) === live;
    if (allocated && lifecycle?.lifecycleType === "OnContainerExit") {
      // OnContainerExit: the container's process exiting is how such a session ends.
      void this.#end(live, "exited");
      return;
    }
    if (allocated) st.replaced.add(identifier);
    ctx.d.metrics.sandboxFailures.inc({ pool: live.rec.poolKey, reason });
    ctx.d.logger.warn({ pool: live.rec.poolKey, session: live.rec.id, reason }, "sandbox ended unexpectedly");
    void this.#end(live, "died");
  }
}
