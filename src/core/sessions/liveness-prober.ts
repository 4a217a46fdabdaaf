// Liveness probes of custom containers: a sandbox failing its probe failureThreshold times in a row is replaced.
import { probeOnce } from "./probes.ts";
import type { EndSession, SessionContext } from "./session-context.ts";

export class LivenessProber {
  readonly #ctx: SessionContext;
  readonly #end: EndSession;

  constructor(ctx: SessionContext, end: EndSession) {
    this.#ctx = ctx;
    this.#end = end;
  }

  /** Runs due Liveness probes; a sandbox failing failureThreshold times in a row is replaced. */
  async check(): Promise<void> {
    const now = performance.now();
    for (const st of this.#ctx.pools.values()) {
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
          this.#ctx.d.metrics.sandboxFailures.inc({ pool: st.key, reason: "liveness" });
          if (m.rec.identifier !== undefined && st.allocated.get(m.rec.identifier) === m)
            st.replaced.add(m.rec.identifier);
          await this.#end(m, "unhealthy");
        }
      }
    }
  }
}
