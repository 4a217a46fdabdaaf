// The data plane at poolManagementEndpoint: both generations of the code-interpreter API (2024-02-02-preview's
// /code/execute and /files/upload, and the current /executions, /files, /session, /listSessions, /metadata,
// /.management/stopSession). Admin credential or a token for this pool; errors in the data-plane envelope.

import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import multipart from "@fastify/multipart";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Authenticator, Principal } from "../../auth/principal.ts";
import {
  ExecutionNotFoundError,
  SessionNotFoundError,
  SessionPoolNotFoundError,
  ValidationError,
} from "../../core/errors.ts";
import { type PoolDoc, poolKey } from "../../core/pools/pool-doc.ts";
import {
  type ExecutionRecord,
  type Executions,
  parseExecutionInput,
  parseShellInput,
} from "../../core/sessions/executions.ts";
import { contentTypeOf, sessionPath } from "../../core/sessions/file-paths.ts";
import {
  type Acquired,
  agentOf,
  type Member,
  type SessionManager,
} from "../../core/sessions/session-manager.ts";
import { SessionPoolError } from "../../errors.ts";
import type { Store, StoredPool } from "../../store/store.ts";
import { authenticateHeaders, requireAuthentication } from "../auth-hook.ts";
import { ApiVersionError, ForbiddenError, RouteNotFoundError, toCodedError } from "../errors.ts";
import {
  assertForwardable,
  assertUpgradable,
  proxyHttp,
  proxyUpgrade,
  refuseUpgrade,
} from "./custom-proxy.ts";
import { installDataPlaneErrorHandler, uploadError } from "./dataplane-errors.ts";
import {
  executionToWire,
  fileToLegacyWire,
  fileToWire,
  legacyExecutionToWire,
  sessionToWire,
} from "./dataplane-wire.ts";
import { proxyPathOf } from "./proxy-path.ts";
import { TrustedProxies } from "./proxy-trust.ts";

export const DATA_PLANE_API_VERSIONS = [
  "2024-02-02-preview",
  "2024-08-02-preview",
  "2024-10-02-preview",
  "2025-02-02-preview",
  "2025-10-02-preview",
];
const LEGACY_VERSIONS = new Set(["2024-02-02-preview", "2024-08-02-preview"]);
const IDENTIFIER = /^[a-zA-Z0-9_|}{[\]:";'<>?/.,@#$%^&*()\-+=!~`]{4,128}$/;
export const UPLOAD_LIMIT_BYTES = 128 * 1024 * 1024;
/**
 * Uploads are held in memory until the session's agent has them (its frames carry their length up front). All
 * uploads in flight together may hold this much; one that would pass it is refused with 503 and Retry-After,
 * so a burst of large uploads cannot take the server's memory.
 */
export const DEFAULT_UPLOAD_BUFFER_BYTES = 512 * 1024 * 1024;
const LIST_SESSIONS_PAGE = 100;
const LEGACY_MAX_OUTPUT_CHARS = 1_000_000;
const DEFAULT_MAX_OUTPUT_CHARS = 4096;

export interface DataPlaneOptions {
  store: Store;
  sessions: SessionManager;
  executions: Executions;
  authenticator: Authenticator;
  config: {
    readonly publicUrl: string;
    readonly uploadBufferBytes?: number;
    /** Direct peers whose X-Forwarded-* the custom-container proxy keeps and extends (default: nobody). */
    readonly trustedProxies?: TrustedProxies;
  };
  now: () => Date;
}

type Params = {
  subscriptionId: string;
  resourceGroupName: string;
  poolName: string;
  "*"?: string;
  executionId?: string;
};

const PREFIX = "/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/sessionPools/:poolName";

export async function dataPlaneRoutes(app: FastifyInstance, o: DataPlaneOptions): Promise<void> {
  installDataPlaneErrorHandler(app);
  requireAuthentication(app, o.authenticator);
  await app.register(multipart, {
    limits: { fileSize: UPLOAD_LIMIT_BYTES, files: 1, fields: 20 },
    throwFileSizeLimit: true,
    // Keep the client's path ("sub/x.csv", "/mnt/data/x.csv"): sessionPath() places it and refuses escapes.
    preservePath: true,
  } as Parameters<typeof multipart>[1]);

  // The pool a request addresses, read from the store once per request (the hooks and handlers all need it).
  const pools = new WeakMap<FastifyRequest, StoredPool | undefined>();
  const poolOf = (request: FastifyRequest): StoredPool | undefined => {
    if (!pools.has(request)) pools.set(request, o.store.getPool(keyOf(request)));
    return pools.get(request);
  };

  const trust = o.config.trustedProxies ?? TrustedProxies.NONE;
  // Custom container pools: everything but stopSession goes to the session's container, before any body parsing.
  app.addHook("onRequest", async (request, reply) => {
    const p = request.params as Params;
    if (p.poolName === undefined) return;
    const key = keyOf(request);
    const pool = poolOf(request);
    if ((pool?.doc as PoolDoc | undefined)?.properties.containerType !== "CustomContainer") return;
    // Cut from the raw URL by segments and decoded: the router's decoded pool name has another length than the
    // client's (`%73ecpool`), and `%2Emanagement/stopSession` is routed to the server's stopSession all the same.
    const target = proxyPathOf(request.url);
    if (target === undefined || target.stopSession) return;
    requirePoolScope(request.principal!, key);
    assertForwardable(request.raw);
    const { member } = await acquire(request, reply);
    member.inFlight++;
    proxyHttp(
      request,
      reply,
      { member, path: target.path, prefix: target.prefix, onDone: () => finished(member) },
      trust,
    );
    return reply;
  });

  /** A proxied exchange ended: one request fewer in flight, and the idle clock restarts now. */
  const finished = (member: Member) => {
    member.inFlight = Math.max(0, member.inFlight - 1);
    touchIfCurrent(member);
  };
  const touchIfCurrent = (member: Member) => {
    if (
      member.rec.identifier !== undefined &&
      o.sessions.find(member.rec.poolKey, member.rec.identifier) === member
    ) {
      o.sessions.touch(member);
    }
  };

  // WebSocket (and any other Upgrade) to a custom container session.
  app.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node takes its own error listener off an upgraded socket: without one, a client that resets the
    // connection while it is authenticated, allocated or refused would crash the process.
    socket.on("error", () => socket.destroy());
    void upgrade(req, socket, head).catch((err: unknown) => {
      refuseUpgrade(
        socket,
        toCodedError(err) ?? new SessionPoolError("InternalServerError", 500, "The upgrade failed."),
      );
    });
  });
  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = proxyPathOf(req.url ?? "/");
    if (!target)
      throw new SessionPoolError(
        "NotFound",
        404,
        "Upgrades are proxied for custom container session pools only.",
      );
    const { subscriptionId, resourceGroup, poolName: name } = target;
    const key = poolKey({ subscriptionId, resourceGroup, name });
    requirePoolScope(await authenticateHeaders(o.authenticator, req.headers), key);
    const pool = o.store.getPool(key);
    if ((pool?.doc as PoolDoc | undefined)?.properties.containerType !== "CustomContainer") {
      throw new SessionPoolError(
        "NotFound",
        404,
        "Upgrades are proxied for custom container session pools only.",
      );
    }
    const url = new URL(req.url ?? "/", "http://upgrade.invalid");
    const identifier = checkIdentifier(url.searchParams.get("identifier") ?? undefined);
    assertUpgradable(req);
    const { member } = await o.sessions.acquire(key, identifier);
    member.inFlight++;
    proxyUpgrade(
      req,
      socket,
      head,
      { member, path: target.path, prefix: target.prefix, onDone: () => finished(member) },
      trust,
    );
  };

  app.addHook("preHandler", async (request) => {
    const key = keyOf(request);
    requirePoolScope(request.principal!, key);
    const pool = poolOf(request);
    if (!pool || (pool.doc as unknown as PoolDoc).properties.provisioningState === "Deleting") {
      throw new SessionPoolNotFoundError((request.params as Params).poolName);
    }
    apiVersionOf(request);
  });

  const acquire = async (request: FastifyRequest, reply: FastifyReply): Promise<Acquired> => {
    const identifier = identifierOf(request);
    const acquired = await o.sessions.acquire(keyOf(request), identifier);
    // Azure sends its x-ms-* timing headers for code interpreters only, never for custom containers.
    if (acquired.member.kind === "code-interpreter") {
      reply.header("x-ms-session-guid", acquired.member.sandboxId.slice(0, 12));
      if (acquired.fresh) reply.header("x-ms-allocation-time", formatMs(acquired.allocationMs));
    }
    if (acquired.replaced) reply.header("x-sessionpool-session-replaced", "true");
    return acquired;
  };
  const existing = (request: FastifyRequest): Member => {
    const identifier = identifierOf(request);
    const member = o.sessions.find(keyOf(request), identifier);
    if (!member) throw new SessionNotFoundError(identifier);
    return member;
  };
  const poolTypeOf = (request: FastifyRequest) =>
    (poolOf(request)?.doc as PoolDoc | undefined)?.properties.containerType;
  const endpoint = (request: FastifyRequest) => {
    const p = request.params as Params;
    return `${o.config.publicUrl}/subscriptions/${p.subscriptionId}/resourceGroups/${p.resourceGroupName}/sessionPools/${p.poolName}`;
  };

  // ---- code execution ----

  const runExecution = async (request: FastifyRequest, reply: FastifyReply, legacy: boolean) => {
    const started = performance.now();
    const apiVersion = apiVersionOf(request);
    if (poolTypeOf(request) === "Shell") {
      const shellInput = parseShellInput(request.body, { defaultMaxOutputChars: DEFAULT_MAX_OUTPUT_CHARS });
      const shellSession = await acquire(request, reply);
      const record = o.executions.startShell(
        shellSession.member,
        shellInput,
        headerOf(request, "operation-id"),
      );
      reply.header("operation-id", record.id);
      await record.done;
      timingHeaders(reply, record, shellSession.allocationMs, performance.now() - started);
      return executionToWire(record);
    }
    const input = parseExecutionInput(request.body, {
      defaultMaxOutputChars:
        legacy || apiVersion !== "2025-10-02-preview" ? LEGACY_MAX_OUTPUT_CHARS : DEFAULT_MAX_OUTPUT_CHARS,
    });
    const { member, allocationMs } = await acquire(request, reply);
    const operationId = headerOf(request, "operation-id");
    const record = o.executions.start(member, input, operationId);
    const location = `${endpoint(request)}/executions/${record.id}?identifier=${encodeURIComponent(record.identifier)}&api-version=${apiVersion}`;
    reply.header("operation-id", record.id).header("operation-location", location);
    if (input.executionType === "Asynchronous" && !legacy) {
      return reply.code(202).send(executionToWire(record));
    }
    await record.done;
    timingHeaders(reply, record, allocationMs, performance.now() - started);
    if (record.result?.restarted) reply.header("x-sessionpool-interpreter-restarted", "true");
    if (legacy) return legacyExecutionToWire(record);
    // 2024-10-02-preview answered every execution with 202 (the body is final all the same); later versions 200.
    if (apiVersion === "2024-10-02-preview") reply.code(202);
    return executionToWire(record);
  };

  app.post(`${PREFIX}/code/execute`, async (request, reply) => runExecution(request, reply, true));
  app.post(`${PREFIX}/executions`, async (request, reply) => runExecution(request, reply, false));
  app.get(`${PREFIX}/executions/:executionId`, async (request) => {
    const p = request.params as Params;
    const record = o.executions.get(keyOf(request), identifierOf(request), p.executionId ?? "");
    if (!record) throw new ExecutionNotFoundError(p.executionId ?? "");
    return executionToWire(record);
  });

  // ---- files ----

  const uploads = new ByteBudget(o.config.uploadBufferBytes ?? DEFAULT_UPLOAD_BUFFER_BYTES);
  const upload = async (request: FastifyRequest, reply: FastifyReply, legacy: boolean) => {
    if (!request.isMultipart()) {
      throw new ValidationError(
        "InvalidMultipartRequest",
        "Upload with Content-Type multipart/form-data and a 'file' part.",
      );
    }
    const held = { bytes: 0 };
    try {
      const { filename, data } = await readFilePart(request, uploads, held);
      const path = sessionPath(queryOf(request, "path"), filename || "upload");
      if (path === "")
        throw new ValidationError("InvalidFilePath", "The uploaded file needs a file name.", "file");
      const { member } = await acquire(request, reply);
      const file = await agentOf(member).writeFile(path, data);
      return legacy ? { $id: "1", value: [fileToLegacyWire(file, 2)] } : fileToWire(file);
    } finally {
      uploads.release(held.bytes);
    }
  };
  app.post(`${PREFIX}/files/upload`, async (request, reply) => upload(request, reply, true));
  app.post(`${PREFIX}/files`, async (request, reply) => upload(request, reply, false));

  app.get(`${PREFIX}/files`, async (request, reply) => {
    const legacy = LEGACY_VERSIONS.has(apiVersionOf(request));
    const recursive = /^(1|true)$/i.test(queryOf(request, "recursive") ?? "");
    const { member } = await acquire(request, reply);
    const files = await agentOf(member).listFiles(sessionPath(queryOf(request, "path")), recursive);
    if (legacy) {
      const plain = files.filter((f) => f.type === "file");
      return { $id: "1", value: plain.map((f, i) => fileToLegacyWire(f, 2 + 2 * i)) };
    }
    return { value: files.map(fileToWire) };
  });

  const sendContent = async (reply: FastifyReply, member: Member, path: string) => {
    const { file, data } = await agentOf(member).readFile(path);
    return reply
      .header("content-type", contentTypeOf(file.name))
      .header("content-disposition", `attachment; filename*=UTF-8''${encodeURIComponent(file.name)}`)
      .header("last-modified", new Date(file.modifiedAtMs).toUTCString())
      .send(data);
  };

  const fileRoute = async (request: FastifyRequest, reply: FastifyReply) => {
    // The router has percent-decoded the wildcard already (%2F included); decoding again would turn a file
    // named "100%" into a URIError and "a%41" into "aA".
    const rest = ((request.params as Params)["*"] ?? "").split("/");
    const legacy = LEGACY_VERSIONS.has(apiVersionOf(request));
    const dir = queryOf(request, "path");
    if (request.method === "GET" && rest[0] === "content" && rest.length > 1 && legacy) {
      const { member } = await acquire(request, reply);
      return sendContent(reply, member, sessionPath(dir, rest.slice(1).join("/")));
    }
    if (request.method === "GET" && rest.length > 1 && rest.at(-1) === "content") {
      const { member } = await acquire(request, reply);
      return sendContent(reply, member, sessionPath(dir, rest.slice(0, -1).join("/")));
    }
    const path = sessionPath(dir, rest.join("/"));
    if (path === "") throw new ValidationError("InvalidFilePath", "A file name is required.", "name");
    const { member } = await acquire(request, reply);
    if (request.method === "DELETE") {
      await agentOf(member).deleteFile(path);
      return reply.code(204).send();
    }
    return fileToWire(await agentOf(member).statFile(path));
  };
  app.get(`${PREFIX}/files/*`, fileRoute);
  app.delete(`${PREFIX}/files/*`, fileRoute);

  // ---- sessions ----

  app.get(`${PREFIX}/session`, async (request) => sessionToWire(existing(request)));
  app.delete(`${PREFIX}/session`, async (request, reply) => {
    await o.sessions.stop(keyOf(request), identifierOf(request), "deleted");
    return reply.code(204).send();
  });
  app.post(`${PREFIX}/.management/stopSession`, async (request, reply) => {
    const identifier = identifierOf(request);
    if (!(await o.sessions.stop(keyOf(request), identifier, "stopped")))
      throw new SessionNotFoundError(identifier);
    return reply
      .type("text/plain; charset=utf-8")
      .send(`Session ${identifier} in session pool ${(request.params as Params).poolName} stopped.`);
  });
  app.get(`${PREFIX}/listSessions`, async (request) => {
    const skipText = queryOf(request, "skip") ?? "0";
    if (!/^\d+$/.test(skipText))
      throw new ValidationError("InvalidSkip", "'skip' must be a whole number.", "skip");
    const skip = Number(skipText);
    const all = o.sessions
      .list(keyOf(request))
      .sort((a, b) => a.rec.allocatedAt!.localeCompare(b.rec.allocatedAt!));
    const page = all.slice(skip, skip + LIST_SESSIONS_PAGE);
    const next = skip + LIST_SESSIONS_PAGE < all.length;
    return {
      sessions: page.map(sessionToWire),
      ...(next
        ? {
            nextLink: `${endpoint(request)}/listSessions?api-version=${apiVersionOf(request)}&skip=${skip + LIST_SESSIONS_PAGE}`,
          }
        : {}),
    };
  });
  // Anything else under the endpoint of a code-interpreter pool is not a route.
  const notARoute = async (request: FastifyRequest) => {
    throw new RouteNotFoundError(request.method, request.url);
  };
  // The endpoint itself is a URL the management API hands out (poolManagementEndpoint): GET says what it serves.
  app.route({
    method: app.supportedMethods.filter((m) => m !== "GET" && m !== "HEAD"),
    url: PREFIX,
    handler: notARoute,
  });
  app.get(PREFIX, async (request) => ({
    name: (request.params as Params).poolName,
    containerType: poolTypeOf(request),
    apiVersions: DATA_PLANE_API_VERSIONS,
  }));
  app.all(`${PREFIX}/*`, notARoute);

  app.get(`${PREFIX}/metadata`, async (request) => {
    const key = keyOf(request);
    const meta = await o.sessions.metadata(key);
    const pool = poolOf(request)!;
    return {
      runtimes: meta.runtimes,
      preInstalledPackages: meta.packages,
      createdAt: pool.createdAt,
      lastUpdatedAt: pool.updatedAt,
      jupyterKernel: {
        name: meta.kernel.name,
        version: meta.kernel.version,
        projectUrl: "https://github.com/sessionpool/sessionpool",
        description: "sessionpool's persistent Python interpreter with Jupyter-style results",
      },
    };
  });
}

/** Bytes held by all requests together, within a fixed capacity. */
class ByteBudget {
  #used = 0;
  readonly #capacity: number;
  constructor(capacity: number) {
    this.#capacity = capacity;
  }
  take(bytes: number): boolean {
    if (this.#used + bytes > this.#capacity) return false;
    this.#used += bytes;
    return true;
  }
  release(bytes: number): void {
    this.#used -= bytes;
  }
}

/**
 * The upload's file part, read whole, each chunk counted against the budget of all uploads in flight (`held` says
 * how much this one holds, to be released when it is done). A body the parser cannot read is answered
 * InvalidMultipartRequest.
 */
async function readFilePart(
  request: FastifyRequest,
  budget: ByteBudget,
  held: { bytes: number },
): Promise<{ filename: string; data: Buffer }> {
  try {
    const part = await request.file();
    if (!part)
      throw new ValidationError("InvalidMultipartRequest", "The request has no 'file' part.", "file");
    const chunks: Buffer[] = [];
    for await (const chunk of part.file as AsyncIterable<Buffer>) {
      if (!budget.take(chunk.length)) {
        throw new SessionPoolError(
          "ServerBusy",
          503,
          "Too many uploads are in progress on this server right now; retry in a few seconds.",
          // The rest of the body is not read: the connection cannot carry another request after this answer.
          { headers: { "retry-after": "5", connection: "close" } },
        );
      }
      held.bytes += chunk.length;
      chunks.push(chunk);
    }
    if (part.file.truncated)
      throw new SessionPoolError("FileTooLarge", 413, "The uploaded file is larger than the 128 MB limit.");
    return { filename: part.filename, data: Buffer.concat(chunks) };
  } catch (err) {
    throw uploadError(err);
  }
}

/** A pool-scoped token works for its own pool only. */
function requirePoolScope(principal: Principal, key: string): void {
  if (principal.kind === "pool" && principal.poolKey !== key) {
    throw new ForbiddenError(
      "Forbidden",
      "This token is for another session pool; get one for this pool with getAuthtoken.",
    );
  }
}

function keyOf(request: FastifyRequest): string {
  const p = request.params as Params;
  return poolKey({ subscriptionId: p.subscriptionId, resourceGroup: p.resourceGroupName, name: p.poolName });
}

function queryOf(request: FastifyRequest, name: string): string | undefined {
  const q = request.query as Record<string, unknown>;
  const v = q[name];
  const first = Array.isArray(v) ? v[0] : v;
  return typeof first === "string" ? first : undefined;
}

function headerOf(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === "string" && v !== "" ? v : undefined;
}

function identifierOf(request: FastifyRequest): string {
  return checkIdentifier(queryOf(request, "identifier"));
}

function checkIdentifier(identifier: string | undefined): string {
  if (identifier === undefined || identifier === "") {
    throw new ValidationError(
      "MissingIdentifier",
      "The 'identifier' query parameter is required: it names the session.",
      "identifier",
    );
  }
  if (!IDENTIFIER.test(identifier)) {
    throw new ValidationError(
      "InvalidIdentifier",
      `The identifier is invalid: use 4 to 128 characters from letters, digits and _|{}[]:";'<>?/.,@#$%^&*()-+=!~\` (got ${identifier.length} characters).`,
      "identifier",
    );
  }
  return identifier;
}

function apiVersionOf(request: FastifyRequest): string {
  const v = queryOf(request, "api-version");
  if (v === undefined || v === "") {
    throw new ApiVersionError(
      "MissingApiVersionParameter",
      `The api-version query parameter is required. Supported versions: ${DATA_PLANE_API_VERSIONS.join(", ")}.`,
    );
  }
  if (!DATA_PLANE_API_VERSIONS.includes(v)) {
    throw new ApiVersionError(
      "InvalidApiVersionParameter",
      `The api-version '${v}' is not supported by the data plane. Supported versions: ${DATA_PLANE_API_VERSIONS.join(", ")}.`,
    );
  }
  return v;
}

function formatMs(ms: number): string {
  return ms.toFixed(6);
}

function timingHeaders(
  reply: FastifyReply,
  record: ExecutionRecord,
  allocationMs: number,
  totalMs: number,
): void {
  reply
    .header("x-ms-preparation-time", formatMs(allocationMs))
    .header("x-ms-container-execution-duration", formatMs(record.result?.durationMs ?? 0))
    .header("x-ms-execution-request-time", formatMs(totalMs - allocationMs))
    .header("x-ms-overall-execution-time", formatMs(totalMs));
}
