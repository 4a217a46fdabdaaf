// Which store a server runs on: the embedded SQLite file in its data dir (the default), or a PostgreSQL database
// that the servers of a fleet share (`--store postgres://...`). Also the checks a shared store needs before a
// server may join it: the same keys as the servers already on it.
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Logger } from "pino";
import { ConfigError } from "../errors.ts";
import { SqliteStore } from "./sqlite/sqlite-store.ts";
import type { Store } from "./store.ts";

export interface OpenedStore {
  store: Store;
  /** Other servers may use it too (PostgreSQL): a fleet. */
  shared: boolean;
  /** Where it is, for log lines: never a password. */
  where: string;
}

/** `spec` is undefined or "sqlite" for the data dir's SQLite file, or a postgres:// (postgresql://) URL. */
export async function openStore(
  spec: string | undefined,
  dataDir: string,
  logger: Logger,
): Promise<OpenedStore> {
  if (spec === undefined || spec === "" || spec === "sqlite") {
    const path = join(dataDir, "sessionpool.db");
    return { store: new SqliteStore(path), shared: false, where: path };
  }
  if (/^postgres(ql)?:\/\//i.test(spec)) {
    // Loaded only when asked for: a single server never loads the driver.
    const { PostgresStore } = await import("./postgres/postgres-store.ts");
    const store = await PostgresStore.open(spec, { logger: logger.child({ component: "store" }) });
    return { store, shared: true, where: redactedUrl(spec) };
  }
  throw new ConfigError(
    `--store must be "sqlite" (the default: a file in the data dir) or a postgres:// URL, not "${redactedUrl(spec)}".`,
  );
}

/** The URL without its password, for messages. */
export function redactedUrl(spec: string): string {
  try {
    const url = new URL(spec);
    if (url.password) url.password = "***";
    return url.toString();
  } catch {
    return spec.replace(/:[^:@/]*@/, ":***@");
  }
}

const KEYS_META = "server-keys";

/**
 * The first server on a store records a fingerprint of its keys (a hash; the keys never leave the data dir); every
 * later start must present the same keys. Secrets sealed by one server of a fleet are opened by another, and a
 * token one issues is checked by all: a server with other keys would fail on both, request after request, so it
 * is refused at start instead, saying which files to copy.
 */
export async function checkServerKeys(
  store: Store,
  keys: { secrets: string; tokenSigning: string },
  keysDir: string,
): Promise<void> {
  const fingerprint = createHash("sha256")
    .update(`sessionpool server keys v1\n${keys.secrets}\n${keys.tokenSigning}\n`)
    .digest("hex");
  const recorded = await store.transaction(async () => {
    const current = await store.getMeta(KEYS_META);
    if (current === undefined) await store.setMeta(KEYS_META, fingerprint);
    return current ?? fingerprint;
  });
  if (recorded !== fingerprint) {
    throw new ConfigError(
      `This server's keys (${join(keysDir, "secrets.key")} and ${join(keysDir, "token-signing.key")}) are not the ones the store was first used with: every server sharing a store must have the same keys. Copy both files from a server already using this store (mode 0600), then start again.`,
    );
  }
}
