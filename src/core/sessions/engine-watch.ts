// Watches the engine: pings it, tells up from down (for /healthz, /readyz and the metric), catches up with
// adoption when it first answers, resynchronises when it comes back, and turns sandbox events into ended sandboxes.
import type { SandboxEvent } from "../../runtime/sandbox-driver.ts";
import type { SandboxAdoption } from "./sandbox-adoption.ts";
import type { LiveSandbox, SessionContext } from "./session-context.ts";

const ENGINE_PING_TIMEOUT_MS = 2_000;

/** The engine as the manager last saw it (served by /healthz and /readyz). */
export interface EngineHealth {
  up: boolean;
  /** When it last changed between up and down. */
  since: string;
  /** Why it is down. */
  error: string | undefined;
}

export class EngineWatch {
  readonly #ctx: SessionContext;
  readonly #adoption: SandboxAdoption;
  readonly #sandboxLost: (live: LiveSandbox, reason: string) => void;
  #engine: EngineHealth;
  #engineCheck: Promise<void> | undefined;
  /** The engine came back and its sandboxes have not been re-read successfully yet. */
  #resyncPending = false;

  constructor(
    ctx: SessionContext,
    adoption: SandboxAdoption,
    sandboxGone: (live: LiveSandbox, reason: string) => void,
  ) {
    this.#ctx = ctx;
    this.#adoption = adoption;
    this.#sandboxLost = sandboxGone;
    this.#engine = { up: true, since: ctx.d.now().toISOString(), error: undefined };
    ctx.d.metrics.engineUp.set(1);
  }

  get health(): EngineHealth {
    return { ...this.#engine };
  }

  /** The engine did not answer at start: serve degraded until it does. */
  markDown(error: string): void {
    this.#engine = { up: false, since: this.#ctx.d.now().toISOString(), error };
    this.#ctx.d.metrics.engineUp.set(0);
  }

  /** A check under way (shutdown waits for it). */
  get checking(): Promise<void> | undefined {
    return this.#engineCheck;
  }

  /**
   * Pings the engine; a change between up and down is logged and counted. Once it is back, sandboxes are
   * resynchronised, and again on every later check until that succeeds (the engine may answer a ping before it
   * can list containers).
   */
  check(): Promise<void> {
    this.#engineCheck ??= (async () => {
      let error: string | undefined;
      try {
        await this.#ctx.d.driver.ping({ signal: AbortSignal.timeout(ENGINE_PING_TIMEOUT_MS) });
      } catch (err) {
        error = (err as Error).message;
      }
      if (this.#ctx.closed) return;
      const up = error === undefined;
      if (up !== this.#engine.up) {
        this.#engine = { up, since: this.#ctx.d.now().toISOString(), error };
        this.#ctx.d.metrics.engineUp.set(up ? 1 : 0);
        if (!up) {
          this.#ctx.d.logger.error(
            { err: error },
            "the container engine stopped answering; sessions are degraded",
          );
          return;
        }
        this.#ctx.d.logger.info({}, "the container engine answers again; resynchronising sandboxes");
        this.#resyncPending = true;
      } else {
        this.#engine.error = error;
      }
      if (up && this.#ctx.adoptionPending) {
        try {
          await this.#adoption.adopt();
          this.#ctx.adoptionPending = false;
        } catch (err) {
          this.#ctx.d.logger.warn({ err }, "adopting sandboxes failed; trying again at the next check");
          return;
        }
      }
      if (up && this.#resyncPending && (await this.#adoption.resync("engine back", true)))
        this.#resyncPending = false;
    })().finally(() => {
      this.#engineCheck = undefined;
    });
    return this.#engineCheck;
  }

  onEvent(event: SandboxEvent): void {
    const live = this.#ctx.bySandbox.get(event.id);
    if (!live) return;
    if (event.type === "oom") {
      // A process inside was OOM-killed; the sandbox itself may well live on (the agent restarts its
      // interpreter). Only "die" and "destroy" mean the sandbox is gone.
      this.#ctx.d.metrics.sandboxFailures.inc({ pool: live.rec.poolKey, reason: "oom" });
      return;
    }
    if (event.type !== "die" && event.type !== "destroy") return;
    this.#sandboxLost(live, event.type);
  }
}
