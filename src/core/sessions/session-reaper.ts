import type { EndSession, SessionContext } from "./session-context.ts";
import { isExpired } from "./session-lifecycle.ts";

export class SessionReaper {
  readonly #ctx: SessionContext;
  readonly #end: EndSession;

  constructor(ctx: SessionContext, end: EndSession) {
    this.#ctx = ctx;
    this.#end = end;
  }

  /** Ends sessions whose cooldown or max-alive period has passed. Runs on a timer; tests may call it. */
  async endExpired(): Promise<void> {
    const now = this.#ctx.d.now();
    for (const st of this.#ctx.pools.values()) {
      for (const m of [...st.allocated.values()]) {
        if (!isExpired(m.rec.expiresAt, now)) continue;
        // A Timed session with a request still open is in use; its idle clock starts when that ends.
        // maxAlivePeriodInSeconds (OnContainerExit) is a hard cap all the same.
        const doc = await this.#ctx.docOf(st.key);
        const timed =
          doc?.properties.dynamicPoolConfiguration.lifecycleConfiguration.lifecycleType !== "OnContainerExit";
        if (timed && m.inFlight > 0) continue;
        await this.#end(m, "expired");
      }
    }
  }
}
