// A PoolProvisioner whose provisioning and deprovision wait until the test says how they end, so long-running
// operations can be observed InProgress, then Succeeded or Failed, without sleeping.
import type { PoolProvisioner } from "../../src/core/pools/pool-service.ts";
import type { BackendParts } from "../../src/server.ts";
import type { StoredPool } from "../../src/store/store.ts";

interface Pending {
  kind: "provision" | "deprovision";
  poolKey: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface GatedBackend {
  /** Pass as ServerOptions.backend. */
  factory: () => Promise<BackendParts>;
  /** Waits until a `kind` call for the pool named `name` is pending, then lets it succeed (or fail with `error`). */
  finish(kind: Pending["kind"], name: string, error?: Error): Promise<void>;
  /** Calls made so far, e.g. "provision sub/rg/name". */
  readonly calls: string[];
}

export function gatedBackend(): GatedBackend {
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
  const provisioner: PoolProvisioner = {
    provision: (pool: StoredPool, signal) => wait("provision", pool.key, signal),
    deprovision: (poolKey: string, signal) => wait("deprovision", poolKey, signal),
  };
  return {
    calls,
    factory: async () => ({ provisioner, close: async () => {} }),
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
