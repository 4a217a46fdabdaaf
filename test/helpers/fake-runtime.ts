// A PoolRuntime whose provisioning and teardown wait until the test says how they end, so long-running
// operations can be observed InProgress, then Succeeded or Failed, without sleeping.
import type { PoolRuntime } from "../../src/core/pools/pool-service.ts";
import type { RuntimeParts } from "../../src/server.ts";
import type { StoredPool } from "../../src/store/store.ts";

interface Pending {
  kind: "provision" | "teardown";
  poolKey: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface GatedRuntime {
  /** Pass as ServerOptions.runtime. */
  factory: () => Promise<RuntimeParts>;
  /** Waits until a `kind` call for the pool named `name` is pending, then lets it succeed (or fail with `error`). */
  finish(kind: Pending["kind"], name: string, error?: Error): Promise<void>;
  /** Calls made so far, e.g. "provision sub/rg/name". */
  readonly calls: string[];
}

export function gatedRuntime(): GatedRuntime {
  const pending: Pending[] = [];
  const calls: string[] = [];
  const wait = (kind: Pending["kind"], poolKey: string, signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      calls.push(`${kind} ${poolKey}`);
      const entry: Pending = { kind, poolKey, resolve, reject };
      pending.push(entry);
      signal.addEventListener("abort", () => {
        const i = pending.indexOf(entry);
        if (i >= 0) pending.splice(i, 1);
        reject(new Error("aborted"));
      });
    });
  const runtime: PoolRuntime = {
    provision: (pool: StoredPool, signal) => wait("provision", pool.key, signal),
    teardown: (poolKey: string, signal) => wait("teardown", poolKey, signal),
  };
  return {
    calls,
    factory: async () => ({ runtime, close: async () => {} }),
    async finish(kind, name, error) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const i = pending.findIndex((p) => p.kind === kind && p.poolKey.endsWith(`/${name}`));
        if (i >= 0) {
          const [entry] = pending.splice(i, 1);
          if (error) entry!.reject(error);
          else entry!.resolve();
          return;
        }
        if (Date.now() > deadline)
          throw new Error(`no pending ${kind} for pool ${name}; calls: ${calls.join("; ")}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}
