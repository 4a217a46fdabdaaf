// Adoption and resync: at start (or once the engine first answers) the sandboxes of the last run are adopted
// when the store knows them, their agents re-attached, and the others removed; after events may have been lost,
// what the engine runs is re-read and sessions whose sandbox is gone end as lost.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { waitForAgent } from "../../agent-channel/agent-endpoint.ts";
import { LABEL_KIND, LABEL_SESSION, LABEL_TEMPLATE_HASH } from "../../runtime/labels.ts";
import { poolDocOf } from "../pools/pool-doc.ts";
import { waitForPort } from "./probes.ts";
import type { SandboxFactory } from "./sandbox-factory.ts";
import { SANDBOX_UID, type SandboxKind, sessionMemoryBytes } from "./sandbox-template.ts";
import { agentOf, inBatches, type LiveSandbox, type SessionContext } from "./session-context.ts";
import { appliedOf, deserializeEnvironment, resolveEnvironment } from "./session-environment.ts";
import type { WarmPoolReconciler } from "./warm-pool-reconciler.ts";

const REMOVE_CONCURRENCY = 8;

export class SandboxAdoption {
  readonly #ctx: SessionContext;
  readonly #factory: SandboxFactory;
  readonly #reconciler: WarmPoolReconciler;
  readonly #sandboxLost: (live: LiveSandbox, reason: string) => void;
  #resyncing: Promise<boolean> | undefined;
  #resyncAgain = false;
  #resyncRefill = false;

  constructor(
    ctx: SessionContext,
    factory: SandboxFactory,
    reconciler: WarmPoolReconciler,
    sandboxGone: (live: LiveSandbox, reason: string) => void,
  ) {
    this.#ctx = ctx;
    this.#factory = factory;
    this.#reconciler = reconciler;
    this.#sandboxLost = sandboxGone;
  }

  /** A resync under way (shutdown waits for it). */
  get resyncing(): Promise<boolean> | undefined {
    return this.#resyncing;
  }

  /**
   * A personalised session keeps its variables across a restart of the server: they are set again (the agent
   * may have been restarted with the sandbox; setting them twice changes nothing), secrets read afresh.
   */
  async #restoreEnvironment(live: LiveSandbox, sealed: string): Promise<void> {
    const entries = deserializeEnvironment(this.#ctx.d.sealer.open(sealed));
    const values = resolveEnvironment(entries, await this.#ctx.d.secrets(live.rec.poolKey));
    await agentOf(live).setEnvironment(values);
    live.environment = appliedOf(entries);
  }

  /** Adopts the engine's live sandboxes of this instance that the store knows; removes the others. */
  async adopt(): Promise<void> {
    const { store, driver } = this.#ctx.d;
    await this.#factory.runtimes(); // the first time the engine answers: a runtime it lacks stops the start here
    const sandboxes = await driver.list(this.#ctx.ownLabels());
    const records = new Map(
      (await store.allSessions()).filter((s) => this.#ctx.owns(s)).map((s) => [s.id, s]),
    );
    const adopted = new Set<string>();
    await Promise.all(
      sandboxes.map(async (sb) => {
        const rec = records.get(sb.labels[LABEL_SESSION] ?? "");
        const pool = rec ? await store.getPool(rec.poolKey) : undefined;
        if (!rec || !pool || sb.state !== "running" || rec.sandboxId !== sb.id) {
          await this.#factory.removeSandbox(sb.id);
          return;
        }
        const kind: SandboxKind = sb.labels[LABEL_KIND] === "custom" ? "custom" : "code-interpreter";
        const doc = poolDocOf(pool);
        const live: LiveSandbox = {
          rec,
          kind,
          sandboxId: sb.id,
          templateHash: sb.labels[LABEL_TEMPLATE_HASH] ?? "",
          socketDir: kind === "custom" ? undefined : join(this.#ctx.d.socketsDir, rec.id),
          agent: undefined,
          address: sb.address,
          port: doc.properties.customContainerTemplate?.ingress.targetPort,
          probeFailures: 0,
          nextProbeAt: 0,
          inFlight: 0,
          persistedAccessMs: 0,
          heldMemoryBytes: 0,
          environment: undefined,
        };
        try {
          if (kind === "custom") {
            if (
              !live.address ||
              !live.port ||
              !(await waitForPort(live.address, live.port, { deadlineMs: 10_000 }))
            ) {
              throw new Error("the container does not serve on its target port");
            }
          } else {
            live.agent = await this.#factory.openEndpoint(rec.id, live.socketDir!, SANDBOX_UID, false);
            const { hello } = await waitForAgent(live.agent, { timeoutMs: 10_000 });
            // Its record says warm, yet it ran something: the record of its claim was lost. Nobody gets it.
            if (rec.state !== "allocated" && hello.used)
              throw new Error("a sandbox recorded as warm has been used");
            if (rec.environment !== undefined) await this.#restoreEnvironment(live, rec.environment);
          }
          const st = this.#ctx.state(rec.poolKey);
          this.#ctx.bySandbox.set(sb.id, live);
          live.heldMemoryBytes = sessionMemoryBytes(doc, this.#ctx.d.defaults);
          this.#ctx.d.capacity.adopt(live.heldMemoryBytes);
          if (rec.state === "allocated" && rec.identifier !== undefined)
            st.allocated.set(rec.identifier, live);
          else {
            rec.state = "ready";
            await store.putSession(rec);
            st.ready.push(live);
          }
          adopted.add(rec.id);
          this.#ctx.publish(st);
        } catch (err) {
          live.agent?.close();
          this.#ctx.d.logger.warn(
            { session: rec.id, err },
            "could not reconnect to a sandbox's agent; removing it",
          );
          await this.#factory.removeSandbox(sb.id);
        }
      }),
    );
    for (const rec of records.values()) {
      if (adopted.has(rec.id)) continue;
      await store.deleteSession(rec.id);
      await rm(join(this.#ctx.d.socketsDir, rec.id), { recursive: true, force: true });
    }
    this.#ctx.d.logger.info(
      { adopted: adopted.size, removed: sandboxes.length - adopted.size },
      "sandboxes adopted after start",
    );
  }

  /**
   * Re-reads what the engine runs after events may have been lost (its restart kills every sandbox): sandboxes
   * whose sandbox is no longer running end as died (their identifiers get fresh sessions, said so) and our
   * leftovers that are not running go. With `refill` (the engine is back) every pool also refills at once instead
   * of after its backoff. Resolves true when the engine could be read.
   */
  resync(why: string, refill: boolean): Promise<boolean> {
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
        if (this.#ctx.closed) return true;
        // Members known before the engine is asked: one registered meanwhile is not in its answer, and not lost.
        const known = [...this.#ctx.bySandbox.values()];
        const listed = await this.#ctx.d.driver.list(this.#ctx.ownLabels(), {
          signal: AbortSignal.timeout(30_000),
        });
        const running = new Set(listed.filter((s) => s.state === "running").map((s) => s.id));
        let gone = 0;
        for (const live of known) {
          if (running.has(live.sandboxId) || this.#ctx.bySandbox.get(live.sandboxId) !== live) continue;
          gone++;
          this.#sandboxLost(live, "lost");
        }
        // Only ended ones: a sandbox being created right now is not running yet either.
        const leftovers = listed.filter(
          (s) => (s.state === "exited" || s.state === "dead") && !this.#ctx.bySandbox.has(s.id),
        );
        await inBatches(leftovers, REMOVE_CONCURRENCY, (s) => this.#factory.removeSandbox(s.id));
        this.#ctx.d.logger.info({ why, gone, removed: leftovers.length }, "sandboxes resynchronised");
        if (!refillNow) continue;
        for (const st of this.#ctx.pools.values()) {
          if (st.retryTimer) clearTimeout(st.retryTimer);
          st.retryTimer = undefined;
          st.failures = 0;
          void this.#reconciler.reconcile(st.key);
        }
      } while (this.#resyncAgain);
      return true;
    })()
      .catch((err) => {
        this.#ctx.d.logger.warn({ err, why }, "resynchronising sandboxes failed");
        return false;
      })
      .finally(() => {
        this.#resyncing = undefined;
      });
    return this.#resyncing;
  }
}
