// Placeholder replaced by the Docker runtime wiring (sessions, data plane).
import type { RuntimeContext, RuntimeParts } from "./server.ts";
import { NOOP_RUNTIME } from "./core/pools/pool-service.ts";

export function dockerRuntime(_options: {
  dockerHost?: string;
}): (ctx: RuntimeContext) => Promise<RuntimeParts> {
  return async () => ({ runtime: NOOP_RUNTIME, close: async () => {} });
}
