// The composition root: from options to a listening server. Opens the data dir (store, keys, admin token),
// wires core to the backend and the HTTP app, resumes interrupted work, and shuts down in order.
import { accessSync, constants, mkdirSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { AdminTokenAuthenticator } from "./auth/admin-token.ts";
import { loadOrCreateSecretFile, randomToken } from "./auth/key-files.ts";
import { PoolTokenService } from "./auth/pool-tokens.ts";
import { AuthenticatorChain } from "./auth/principal.ts";
import { SecretBox } from "./auth/secret-box.ts";
import { McpKeys } from "./core/mcp/mcp-keys.ts";
import { PoolSecrets } from "./core/pools/pool-secrets.ts";
import { NOOP_PROVISIONER, type PoolProvisioner, PoolService } from "./core/pools/pool-service.ts";
import { ConfigError } from "./errors.ts";
import { type AppDeps, buildApp, type DataPlanePlugin, type OperationalPlugin } from "./http/app.ts";
import { TrustedProxies } from "./http/dataplane/proxy-trust.ts";
import { checkServerKeys, openStore } from "./store/open-store.ts";
import type { Store, StoredMember } from "./store/store.ts";

export interface ServerOptions {
  host: string;
  port: number;
  dataDir: string;
  publicUrl?: string;
  /** The admin credential; generated and kept in the data dir when absent. */
  adminToken?: string;
  tls?: { certPath: string; keyPath: string } | "self-signed";
  insecureHttp?: boolean;
  logLevel?: string;
  logger?: Logger;
  listPageSize?: number;
  retryAfterSeconds?: number;
  maxSessionsCap?: number;
  tokenTtlSeconds?: number;
  /**
   * Addresses and CIDR ranges of proxies in front of the server: their X-Forwarded-* headers reach custom
   * containers (extended with this hop); anyone else's are replaced by what the server saw. Default: nobody.
   */
  trustedProxies?: readonly string[];
  /**
   * The store: undefined or "sqlite" for the SQLite file in the data dir; a postgres:// URL for a PostgreSQL
   * database, which the servers of a fleet share.
   */
  store?: string;
  /**
   * Where the other servers of a fleet reach this one (default: the public URL). Only with a shared store.
   */
  fleetAddress?: string;
  /** How often a fleet member reads the pools from the shared store (default 1 s). */
  fleetSyncMs?: number;
  /** Decorates the store (tests: a store that fails on purpose); the store itself otherwise. */
  wrapStore?: (store: Store) => Store;
  /** Builds the backend (engine, sandboxes, sessions, data plane); without it pools provision nothing. */
  backend?: (ctx: BackendContext) => Promise<BackendParts>;
  now?: () => Date;
}

export interface BackendContext {
  store: Store;
  /** The pools' secrets, for sandboxes being created (the pool service is built after the backend). */
  secrets: PoolSecrets;
  /** The pools' MCP server API keys, which the data plane's /mcp endpoint checks. */
  mcpKeys: McpKeys;
  /** The server's key for what is stored encrypted (secrets, a session's personalised environment). */
  secretBox: SecretBox;
  logger: Logger;
  dataDir: string;
  publicUrl: string;
  authenticator: AuthenticatorChain;
  trustedProxies: TrustedProxies;
  now: () => Date;
  /** This server's instance id when the store is shared (a fleet); otherwise the store's meta keeps it. */
  instanceId?: string;
  /** Set when the store is shared: this server is one of a fleet; `address` is where the others reach it. */
  fleet?: { instanceId: string; address: string | undefined };
}

export interface BackendParts {
  provisioner: PoolProvisioner;
  dataPlane?: DataPlanePlugin;
  operational?: OperationalPlugin;
  /** Called once the pool service exists and has resumed. */
  start?: () => Promise<void>;
  /** The sandbox runtime (the OCI runtime: "runsc" is gVisor), once the engine has answered. */
  sandboxRuntime?: () => string | undefined;
  /** The fleet this server is one of (a shared store). */
  fleet?: { members(): readonly StoredMember[]; readonly isJanitor: boolean; readonly selfId: string };
  close: () => Promise<void>;
}

export interface RunningServer {
  url: string;
  publicUrl: string;
  caPath: string | undefined;
  adminTokenPath: string | undefined;
  /** The sandbox runtime ("runsc" is gVisor); undefined without a backend or before the engine answered. */
  sandboxRuntime: string | undefined;
  /** Drains requests, stops background work, closes the store. Safe to call twice. */
  close(): Promise<void>;
}

export { ConfigError };

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const now = o.now ?? (() => new Date());
  const logger =
    o.logger ??
    pino({
      level: o.logLevel ?? "info",
      redact: {
        paths: ["req.headers.authorization", "*.token", "*.password", "*.value"],
        censor: "[redacted]",
      },
    });
  if (!isLoopback(o.host) && !o.tls && !o.insecureHttp) {
    throw new ConfigError(
      `Refusing to serve plain HTTP on the non-loopback address ${o.host}: tokens would cross the network in clear. Use --tls-cert/--tls-key or --tls-self-signed, or --insecure-http if you really mean it.`,
    );
  }
  const trustedProxies = new TrustedProxies(o.trustedProxies ?? []);
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  assertWritable(o.dataDir);

  let adminTokenPath: string | undefined;
  let adminToken = o.adminToken;
  if (adminToken === undefined) {
    adminTokenPath = join(o.dataDir, "admin-token");
    const loaded = loadOrCreateSecretFile(adminTokenPath, () => randomToken());
    adminToken = loaded.value;
    logger.info(
      { path: adminTokenPath, created: loaded.created },
      "admin credential kept in %s (mode 0600)",
      adminTokenPath,
    );
  }
  const keysDir = join(o.dataDir, "keys");
  const secretsKey = loadOrCreateSecretFile(join(keysDir, "secrets.key"), SecretBox.generateKey).value;
  const secretBox = new SecretBox(secretsKey);
  const signingKey = loadOrCreateSecretFile(join(keysDir, "token-signing.key"), () => randomToken(32)).value;
  const tokens = new PoolTokenService(
    signingKey,
    o.tokenTtlSeconds ?? 3600,
    // Called per request, long after `pools` is set below; before that no token can have been issued.
    async (key) => pools?.liveUid(key),
  );
  const authenticator = new AuthenticatorChain([new AdminTokenAuthenticator(adminToken), tokens]);

  let https: AppDeps["https"];
  let caPath: string | undefined;
  if (o.tls === "self-signed") {
    const { ensureSelfSignedTls } = await import("./http/tls.ts");
    const files = await ensureSelfSignedTls(join(o.dataDir, "tls"), [o.host]);
    caPath = files.caPath;
    https = { key: readFileSync(files.keyPath), cert: readFileSync(files.certPath) };
    logger.info({ ca: caPath }, "self-signed TLS: clients should trust the CA at %s", caPath);
  } else if (o.tls) {
    https = { key: readFileSync(o.tls.keyPath), cert: readFileSync(o.tls.certPath) };
  }

  const scheme = https ? "https" : "http";
  const hostForUrl =
    isIP(o.host) === 6 ? `[${o.host}]` : o.host === "0.0.0.0" || o.host === "::" ? "127.0.0.1" : o.host;

  const opened = await openStore(o.store, o.dataDir, logger);
  const store = o.wrapStore ? o.wrapStore(opened.store) : opened.store;
  try {
    await checkServerKeys(store, { secrets: secretsKey, tokenSigning: signingKey }, keysDir);
  } catch (err) {
    await store.close();
    throw err;
  }
  // In a fleet every server has its own instance id (the label on its sandboxes), kept beside its keys.
  const instanceId = opened.shared
    ? loadOrCreateSecretFile(join(o.dataDir, "instance-id"), () => crypto.randomUUID()).value
    : undefined;
  const secrets = new PoolSecrets(store, secretBox);
  const mcpKeys = new McpKeys(store, secretBox);
  let pools: PoolService | undefined;
  let parts: BackendParts | undefined;
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      await app?.close().catch((err) => logger.warn({ err }, "error while closing HTTP"));
      await pools?.close();
      await parts?.close().catch((err) => logger.warn({ err }, "error while closing the backend"));
      await store.close();
    })();
    return closed;
  };

  try {
    // The public URL needs the port, which may be chosen by the OS; listen first on a placeholder config.
    let publicUrl = o.publicUrl?.replace(/\/+$/, "") ?? "";
    const ctx: BackendContext = {
      store,
      secrets,
      mcpKeys,
      secretBox,
      logger,
      dataDir: o.dataDir,
      get publicUrl() {
        return publicUrl;
      },
      authenticator,
      trustedProxies,
      now,
      ...(instanceId
        ? { instanceId, fleet: { instanceId, address: o.fleetAddress?.replace(/\/+$/, "") } }
        : {}),
    };
    parts = o.backend ? await o.backend(ctx) : undefined;
    pools = new PoolService({
      store,
      secrets,
      provisioner: parts?.provisioner ?? NOOP_PROVISIONER,
      rules: { maxSessionsCap: o.maxSessionsCap ?? 600 },
      now,
      logger,
    });
    const config = {
      get publicUrl() {
        return publicUrl;
      },
      listPageSize: o.listPageSize ?? 100,
      retryAfterSeconds: o.retryAfterSeconds ?? 1,
      bodyLimitBytes: 4 * 1024 * 1024,
    };
    app = await buildApp({
      pools,
      authenticator,
      tokens,
      mcpKeys,
      config,
      logger,
      now,
      ...(https ? { https } : {}),
      ...(parts?.dataPlane ? { dataPlane: parts.dataPlane } : {}),
      ...(parts?.operational ? { operational: parts.operational } : {}),
    });
    await app.listen({ host: o.host, port: o.port });
    const address = app.server.address();
    const port = typeof address === "object" && address ? address.port : o.port;
    const url = `${scheme}://${hostForUrl}:${port}`;
    if (publicUrl === "") publicUrl = url;
    // Adopt live sandboxes before pools resume, so the reconciler counts them instead of creating more.
    await parts?.start?.();
    await pools.resume();
    // A fleet: pools created, changed or deleted through the other servers are provisioned here too.
    if (opened.shared) pools.startSync(o.fleetSyncMs ?? 1000);
    logger.info({ url, publicUrl }, "sessionpool listening on %s", url);
    const sandboxRuntime = parts?.sandboxRuntime?.();
    return { url, publicUrl, caPath, adminTokenPath, sandboxRuntime, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The data dir holds the store, keys and sockets: refuse to start on one that cannot be written, and say why. */
function assertWritable(dataDir: string): void {
  try {
    accessSync(dataDir, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EROFS" ? "it is on a read-only file system" : `it is not writable (${code})`;
    throw new ConfigError(
      `The data dir ${dataDir} cannot be used: ${why}. sessionpool keeps its pools, keys and session records there; give it a writable directory (--data-dir).`,
    );
  }
}
