// When a session ends: pure functions of (pool, session, now), so tests move a clock instead of sleeping.
import type { PoolDoc } from "../pools/pool-doc.ts";

export interface SessionTimes {
  allocatedAt: Date;
  lastAccessedAt: Date;
}

/**
 * Timed pools end a session `cooldownPeriodInSeconds` after its last request, and never later than
 * `maxAlivePeriodInSeconds` after allocation when the pool sets it; OnContainerExit pools at
 * `maxAlivePeriodInSeconds` after allocation at the latest (earlier when the container exits).
 */
export function sessionExpiry(doc: PoolDoc, times: SessionTimes): Date {
  const lc = doc.properties.dynamicPoolConfiguration.lifecycleConfiguration;
  if (lc.lifecycleType === "OnContainerExit") {
    return new Date(times.allocatedAt.getTime() + (lc.maxAlivePeriodInSeconds ?? 3600) * 1000);
  }
  const idle = times.lastAccessedAt.getTime() + (lc.cooldownPeriodInSeconds ?? 300) * 1000;
  if (lc.maxAlivePeriodInSeconds === undefined) return new Date(idle);
  return new Date(Math.min(idle, times.allocatedAt.getTime() + lc.maxAlivePeriodInSeconds * 1000));
}

export function isExpired(expiresAt: string | undefined, now: Date): boolean {
  return expiresAt !== undefined && Date.parse(expiresAt) <= now.getTime();
}
