// Rows of the stores' tables as the Store interface's records: SQLite and PostgreSQL have the same columns; where
// their drivers hand a value over differently (JSON text or parsed JSONB, 0/1 or a boolean, epoch milliseconds or
// a Date), both are read.
import type { OperationStatus, StoredMember, StoredOperation, StoredPool, StoredSession } from "./store.ts";

export type Row = Record<string, unknown>;

export function opt(value: unknown): string | undefined {
  return value === null || value === undefined ? undefined : String(value);
}

export function poolFromRow(r: Row): StoredPool {
  return {
    key: String(r["key"]),
    subscriptionId: String(r["subscription_id"]),
    resourceGroup: String(r["resource_group"]),
    name: String(r["name"]),
    doc: JSON.parse(String(r["doc"])) as Record<string, unknown>,
    etag: String(r["etag"]),
    generation: Number(r["generation"]),
    uid: String(r["uid"]),
    createdAt: String(r["created_at"]),
    updatedAt: String(r["updated_at"]),
  };
}

export function operationFromRow(r: Row): StoredOperation {
  const error = opt(r["error"]);
  return {
    id: String(r["id"]),
    poolKey: String(r["pool_key"]),
    resourceId: String(r["resource_id"]),
    kind: String(r["kind"]) as StoredOperation["kind"],
    status: String(r["status"]) as OperationStatus,
    generation: Number(r["generation"]),
    location: String(r["location"]),
    apiVersion: String(r["api_version"]),
    startTime: String(r["start_time"]),
    endTime: opt(r["end_time"]),
    error: error === undefined ? undefined : (JSON.parse(error) as StoredOperation["error"]),
  };
}

export function sessionFromRow(r: Row): StoredSession {
  return {
    id: String(r["id"]),
    poolKey: String(r["pool_key"]),
    identifier: opt(r["identifier"]),
    state: String(r["state"]) as StoredSession["state"],
    sandboxId: opt(r["sandbox_id"]),
    generation: Number(r["generation"]),
    createdAt: String(r["created_at"]),
    allocatedAt: opt(r["allocated_at"]),
    lastAccessedAt: opt(r["last_accessed_at"]),
    expiresAt: opt(r["expires_at"]),
    environment: opt(r["environment"]),
    owner: opt(r["owner"]),
  };
}

export function memberFromRow(r: Row): StoredMember {
  const heartbeatAt = r["heartbeat_at"];
  return {
    id: String(r["id"]),
    address: String(r["address"]),
    capacity: Number(r["capacity"]),
    engineUp: r["engine_up"] === true || Number(r["engine_up"]) === 1,
    ready: counts(r["ready"]),
    allocated: counts(r["allocated"]),
    startedAt: String(r["started_at"]),
    heartbeatAt:
      heartbeatAt instanceof Date
        ? heartbeatAt.toISOString()
        : typeof heartbeatAt === "number"
          ? new Date(heartbeatAt).toISOString()
          : String(heartbeatAt),
  };
}

/** Counts by pool key: JSON text (SQLite) or parsed JSONB (PostgreSQL). */
function counts(value: unknown): Record<string, number> {
  if (typeof value === "string") return JSON.parse(value) as Record<string, number>;
  return (value ?? {}) as Record<string, number>;
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
