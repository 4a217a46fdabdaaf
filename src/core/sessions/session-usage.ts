// What a session costs right now (GET /session's `usage`, a sessionpool extension): CPU and memory from the
// engine, the bytes in /mnt/data from the session's agent (the engine cannot see into the sandbox's tmpfs).
import type { SandboxDriver } from "../../runtime/sandbox-driver.ts";
import type { LiveSandbox } from "./session-context.ts";

export interface SessionUsage {
  /** CPU time the sandbox has used since it started, in seconds. */
  cpuSeconds: number | null;
  /** Memory in use now, the files of its tmpfs mounts (/mnt/data, /tmp) included. */
  memoryBytes: number | null;
  /** Bytes in use in /mnt/data; null for custom containers, which have no agent to ask. */
  diskBytes: number | null;
  measuredAt: Date;
}

/** Both questions together must answer within this; past it the engine's or agent's timeout error answers. */
export const USAGE_TIMEOUT_MS = 5_000;

/**
 * Asks the engine and the agent at once. A number the engine does not report (the sandbox stopped between the
 * lookup and the sample, or a driver without usage) is null; errors (engine down, agent gone or too slow) are
 * the runtime's and the agent's coded errors, as for any other request on the session.
 */
export async function measureUsage(
  driver: SandboxDriver,
  live: LiveSandbox,
  now: () => Date,
): Promise<SessionUsage> {
  const agent = live.agent?.current();
  const [engine, diskBytes] = await Promise.all([
    driver.usage?.(live.sandboxId, { timeoutMs: USAGE_TIMEOUT_MS }),
    agent?.dataDirUsedBytes({ timeoutMs: USAGE_TIMEOUT_MS }),
  ]);
  return {
    cpuSeconds: engine?.cpuSeconds ?? null,
    memoryBytes: engine?.memoryBytes ?? null,
    diskBytes: diskBytes ?? null,
    measuredAt: now(),
  };
}
