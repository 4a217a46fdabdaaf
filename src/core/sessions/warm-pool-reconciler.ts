// The warm-pool reconciler: per pool, single-flight, observe -> diff against readySessionInstances -> create or
// end sandboxes -> publish. Creates are counted as pending before they are issued, so a stale view cannot
// over-create; a failing create backs off instead of spinning the engine.
import { isSessionPoolError } from "../../errors.ts";
import type { StoredPool } from "../../store/store.ts";
import { SessionStartError } from "../errors.ts";
import { type PoolDoc, poolDocOf } from "../pools/pool-doc.ts";
import type { SandboxFactory } from "./sandbox-factory.ts";
import type { SandboxTemplate } from "./sandbox-template.ts";
import type { EndSession, PoolState, SessionContext } from "./session-context.ts";

const REFILL_DELAY_MS = 50;
/** How long a resolved image id is trusted before the engine is asked again (a rebuilt :latest rolls the pool). */
const TEMPLATE_TTL_MS = 10_000;

export class WarmPoolReconciler {
  readonly #ctx: SessionContext;
  readonly #factory: SandboxFactory;
  readonly #end: EndSession;

  constructor(ctx: SessionContext, factory: SandboxFactory, end: EndSession) {
    this.#ctx = ctx;
    this.#factory = factory;
    this.#end = end;
  }

  /**
   * Provisioning: resolves the pool's template (pulling a custom image), then converges until its ready sandboxes
   * are warm on that template; throws the reason when a sandbox cannot be started. Returns early when a newer
   * generation of the pool supersedes this one (its own run settles).
   */
  async untilWarm(pool: StoredPool, signal: AbortSignal): Promise<void> {
    const st = this.#ctx.state(pool.key);
    st.lastError = undefined;
    st.failures = 0;
    const doc = poolDocOf(pool);
    st.template = await this.#factory.resolveTemplate(doc, pool, signal, {
      pull: doc.properties.containerType === "CustomContainer",
    });
    st.templateFor = { generation: pool.generation, atMs: performance.now() };
    for (;;) {
      signal.throwIfAborted();
      await this.reconcile(pool.key);
      signal.throwIfAborted();
      const current = await this.#ctx.d.store.getPool(pool.key);
      if (!current || current.generation !== pool.generation) return;
      const target = this.readyTarget(poolDocOf(current), st);
      const warm = st.ready.filter((m) => m.templateHash === st.template?.hash).length;
      if (warm >= target) return;
      if (st.lastError) throw st.lastError;
    }
  }

  /**
   * Refills after a claim, a moment later: creating a sandbox costs the engine and this process CPU that the
   * claimed session's first execution would otherwise compete with (2 cores). Claims in a burst share one refill.
   */
  refillSoon(st: PoolState): void {
    if (st.refillTimer) return;
    st.refillTimer = setTimeout(() => {
      st.refillTimer = undefined;
      void this.reconcile(st.key);
    }, REFILL_DELAY_MS);
    st.refillTimer.unref();
  }

  readyTarget(doc: PoolDoc, st: PoolState): number {
    const scale = doc.properties.scaleConfiguration;
    // In a fleet, this server's share of the pool's ready sandboxes, within the room the whole fleet leaves.
    const ready =
      this.#ctx.fleet?.readyShare(st.key, scale.readySessionInstances) ?? scale.readySessionInstances;
    const room =
      scale.maxConcurrentSessions - st.allocated.size - st.coldPending - this.#ctx.allocatedElsewhere(st.key);
    return Math.max(0, Math.min(ready, room));
  }

  reconcile(poolKey: string): Promise<void> {
    const st = this.#ctx.state(poolKey);
    if (this.#ctx.closed || st.controller.signal.aborted) return Promise.resolve();
    if (st.reconciling) {
      st.again = true;
      return st.reconciling;
    }
    st.reconciling = (async () => {
      do {
        st.again = false;
        await this.#reconcileOnce(st);
      } while (st.again && !this.#ctx.closed && !st.controller.signal.aborted);
    })()
      .catch((err) => {
        this.#ctx.d.logger.warn({ pool: poolKey, err }, "reconcile failed");
      })
      .finally(() => {
        st.reconciling = undefined;
      });
    return st.reconciling;
  }

  async #reconcileOnce(st: PoolState): Promise<void> {
    // Until the last run's sandboxes are adopted, they would be created a second time.
    if (this.#ctx.adoptionPending) return;
    const stored = await this.#ctx.d.store.getPool(st.key);
    if (!stored) return;
    const doc = poolDocOf(stored);
    st.doc = doc;
    if (doc.properties.provisioningState === "Deleting") return;
    const signal = st.controller.signal;
    let template: SandboxTemplate;
    try {
      const cached = st.template;
      const fresh =
        cached !== undefined &&
        st.templateFor?.generation === stored.generation &&
        performance.now() - st.templateFor.atMs < TEMPLATE_TTL_MS;
      template = fresh ? cached : await this.#factory.resolveTemplate(doc, stored, signal);
      if (!fresh) st.templateFor = { generation: stored.generation, atMs: performance.now() };
      st.template = template;
    } catch (err) {
      st.lastError = isSessionPoolError(err) ? err : new SessionStartError((err as Error).message, err);
      return;
    }
    const hash = template.hash;
    // Roll warm sandboxes built from an older template.
    for (const m of st.ready.filter((r) => r.templateHash !== hash)) await this.#end(m, "replaced");
    const target = this.readyTarget(doc, st);
    while (st.ready.length + st.warmPending > target && st.ready.length > 0)
      await this.#end(st.ready.pop()!, "scaled-down");
    const need = target - st.ready.length - st.warmPending;
    if (need <= 0) return;
    st.warmPending += need;
    this.#ctx.publish(st);
    const results = await Promise.allSettled(
      Array.from({ length: need }, async () => {
        try {
          const live = await this.#factory.create(stored, template, signal);
          // Cold starts may have taken the room meanwhile: a sandbox beyond the target is not kept warm.
          if (signal.aborted || this.#ctx.closed || st.ready.length >= this.readyTarget(doc, st)) {
            await this.#factory.remove(live);
            return;
          }
          st.ready.push(live);
        } finally {
          st.warmPending--;
          this.#ctx.publish(st);
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
      this.#ctx.d.metrics.sandboxFailures.inc({ pool: st.key, reason: "start" });
      this.#ctx.d.logger.warn({ pool: st.key, err: st.lastError.message }, "warm sandbox failed to start");
      // A pool whose provisioning failed waits for its next PUT or PATCH instead of crash-looping sandboxes.
      const state = (await this.#ctx.docOf(st.key))?.properties.provisioningState;
      if (state === "Failed") return;
      // Back off before trying again so a broken image does not spin the engine.
      const delay = Math.min(30_000, 500 * 2 ** Math.min(st.failures, 6));
      if (st.retryTimer) clearTimeout(st.retryTimer);
      st.retryTimer = setTimeout(() => {
        st.retryTimer = undefined;
        void this.reconcile(st.key);
      }, delay);
      st.retryTimer.unref();
    } else if (!failed) {
      st.failures = 0;
      st.lastError = undefined;
    }
  }
}
