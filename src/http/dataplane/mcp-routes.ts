// A pool's MCP server at {poolManagementEndpoint}/mcp over MCP's Streamable HTTP transport: POST carries JSON-RPC
// (answered as JSON, or as an SSE stream when the client prefers one), Mcp-Session-Id from initialize on, DELETE
// ends a session (and the environments it launched), GET answers 405 (no server-initiated messages). The caller
// proves itself with the pool's API key (x-ms-apikey), or with the pool's data-plane token when the pool disabled
// keys; the admin credential is accepted as a Bearer token too, for operators.
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AuthenticationError } from "../../auth/errors.ts";
import { SessionPoolNotFoundError } from "../../core/errors.ts";
import {
  errorResponse,
  type Incoming,
  JSON_RPC,
  type JsonRpcResponse,
  PROTOCOL_VERSIONS,
  parseBody,
} from "../../core/mcp/mcp-protocol.ts";
import type { McpCaller } from "../../core/mcp/mcp-tools.ts";
import { poolDocOf } from "../../core/pools/pool-doc.ts";
import type { StoredPool } from "../../store/store.ts";
import { authenticateHeaders } from "../auth-hook.ts";
import { MethodNotAllowedError, UnsupportedMediaTypeError } from "../errors.ts";
import { McpServerNotFoundError } from "./dataplane-errors.ts";
import { type DataPlaneContext, PoolParams, PREFIX } from "./dataplane-request.ts";
import { wantsEventStream } from "./execution-stream.ts";
import { McpEventStream } from "./mcp-event-stream.ts";
import { forwardToContainer } from "./proxy-routes.ts";

/** The largest JSON-RPC body taken (a base64 file upload included); larger ones get 413 before they are read. */
export const MCP_BODY_LIMIT_BYTES = 4 * 1024 * 1024;
/** MCP sessions kept at once; the least recently used one is forgotten past it (its client re-initializes). */
const MAX_MCP_SESSIONS = 10_000;
/** MCP's code for "session not found" (the TypeScript SDK's server uses it with HTTP 404). */
const SESSION_NOT_FOUND = -32001;

interface McpSession {
  poolKey: string;
  poolUid: string;
  holder: string;
  environments: Set<string>;
}

declare module "fastify" {
  interface FastifyRequest {
    mcpCaller?: McpCaller;
  }
}

/** The MCP sessions of every pool, bounded (least recently used out first). */
class McpSessions {
  readonly #sessions = new Map<string, McpSession>();

  create(pool: StoredPool, holder: string): { id: string; session: McpSession } {
    const id = randomUUID();
    const session = { poolKey: pool.key, poolUid: pool.uid, holder, environments: new Set<string>() };
    this.#sessions.set(id, session);
    if (this.#sessions.size > MAX_MCP_SESSIONS) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest !== undefined) this.#sessions.delete(oldest);
    }
    return { id, session };
  }

  /** The session `id` names for this pool (and this incarnation of it), refreshed as recently used. */
  get(id: string, pool: StoredPool): McpSession | undefined {
    const session = this.#sessions.get(id);
    if (!session || session.poolKey !== pool.key || session.poolUid !== pool.uid) return undefined;
    this.#sessions.delete(id);
    this.#sessions.set(id, session);
    return session;
  }

  delete(id: string): void {
    this.#sessions.delete(id);
  }
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** q-values of the media types in an Accept header ("*\/*" and a missing header accept JSON). */
function prefersEventStream(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  const q = new Map<string, number>();
  for (const part of accept.split(",")) {
    const [type, ...params] = part.trim().toLowerCase().split(";");
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    q.set(type ?? "", qParam ? Number(qParam.slice(2)) || 0 : 1);
  }
  const sse = q.get("text/event-stream") ?? 0;
  const json = q.get("application/json") ?? q.get("application/*") ?? q.get("*/*") ?? 0;
  return sse > json;
}

export async function mcpRoutes(app: FastifyInstance, ctx: DataPlaneContext): Promise<void> {
  const mcp = ctx.o.mcp;
  if (!mcp) return;
  const sessions = new McpSessions();

  // The body is read as text and parsed here, so a body that is not JSON gets JSON-RPC's -32700, not a 400 in the
  // data plane's envelope; past the limit, 413 before the rest is read.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string", bodyLimit: MCP_BODY_LIMIT_BYTES }, (_req, body, done) =>
    done(null, body),
  );

  app.decorateRequest("mcpCaller", undefined);
  // Authentication before the body is read: an unauthenticated caller cannot make the server buffer 4 MiB.
  app.addHook("onRequest", async (request, reply) => {
    const pool = await ctx.poolOf(request);
    if (!pool || poolDocOf(pool).properties.provisioningState === "Deleting") {
      throw new SessionPoolNotFoundError((request.params as PoolParams).poolName);
    }
    if (poolDocOf(pool).properties.containerType === "CustomContainer") {
      // Every path of a custom container's endpoint is the container's (its own /mcp server, say).
      request.principal = await authenticateHeaders(ctx.o.authenticator, request.headers);
      return forwardToContainer(ctx, request, reply);
    }
    const settings = poolDocOf(pool).properties.mcpServerSettings;
    if (settings?.isMcpServerEnabled !== true) throw new McpServerNotFoundError(pool.name);
    request.mcpCaller = { pool, holder: await holderOf(request, pool, settings.isMcpServerApiKeyDisabled) };
    return undefined;
  });

  const holderOf = async (
    request: FastifyRequest,
    pool: StoredPool,
    keysDisabled: boolean,
  ): Promise<string> => {
    const apiKey = header(request, "x-ms-apikey");
    const incarnation = `${pool.key}#${pool.uid}`;
    if (header(request, "authorization") !== undefined && (apiKey === undefined || keysDisabled)) {
      const principal = await authenticateHeaders(ctx.o.authenticator, request.headers);
      if (principal.kind === "admin") return `${incarnation}#admin`;
      if (keysDisabled && principal.poolKey === pool.key) return `${incarnation}#token`;
      throw new AuthenticationError(
        "InvalidAuthenticationToken",
        keysDisabled
          ? "This token is for another session pool; get one for this pool with getAuthtoken."
          : "This MCP server takes its API key in the x-ms-apikey header (fetchMcpServerCredentials), not a bearer token.",
      );
    }
    if (keysDisabled) {
      throw new AuthenticationError(
        "AuthenticationFailed",
        "This pool's MCP server has API keys disabled (isMcpServerApiKeyDisabled): send the pool's data-plane token as 'Authorization: Bearer <token>' (getAuthtoken).",
      );
    }
    if (apiKey === undefined) {
      throw new AuthenticationError(
        "AuthenticationFailed",
        "Authentication is required: send the MCP server's API key as 'x-ms-apikey: <key>' (fetchMcpServerCredentials).",
      );
    }
    if (!(await mcp.keys.verify(pool, apiKey))) {
      throw new AuthenticationError(
        "InvalidAuthenticationToken",
        "The x-ms-apikey is not this MCP server's current key (a rotated key is refused at once); fetch the current one with fetchMcpServerCredentials.",
      );
    }
    return `${incarnation}#key`;
  };

  const send = (
    request: FastifyRequest,
    reply: FastifyReply,
    status: number,
    body: JsonRpcResponse | JsonRpcResponse[],
  ) => {
    if (status === 200 && prefersEventStream(header(request, "accept"))) {
      // One event, then the stream ends: the transport lets the server close it once the response is sent.
      const events = (Array.isArray(body) ? body : [body]).map(
        (m) => `event: message\ndata: ${JSON.stringify(m)}\n\n`,
      );
      return reply
        .code(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .send(events.join(""));
    }
    return reply
      .code(status)
      .header("content-type", "application/json; charset=utf-8")
      .send(JSON.stringify(body));
  };

  const post = async (request: FastifyRequest, reply: FastifyReply) => {
    const caller = request.mcpCaller!;
    const contentType = header(request, "content-type");
    if (contentType !== undefined && !/^application\/json\s*(;|$)/i.test(contentType)) {
      throw new UnsupportedMediaTypeError();
    }
    const version = header(request, "mcp-protocol-version");
    if (version !== undefined && !(PROTOCOL_VERSIONS as readonly string[]).includes(version)) {
      return send(
        request,
        reply,
        400,
        errorResponse(
          null,
          JSON_RPC.invalidRequest,
          `Unsupported MCP-Protocol-Version '${version}'; supported: ${PROTOCOL_VERSIONS.join(", ")}.`,
        ),
      );
    }
    const parsed = parseBody(typeof request.body === "string" ? request.body : "");
    if (!parsed.ok) return send(request, reply, 400, parsed.error);
    const { messages, batch } = parsed;
    if (!batch && messages[0]?.kind === "invalid") return send(request, reply, 400, messages[0].error);

    const initializing = messages.some((m) => m.kind === "request" && m.message.method === "initialize");
    const sessionId = header(request, "mcp-session-id");
    let session: McpSession | undefined;
    if (initializing) {
      const created = sessions.create(caller.pool, caller.holder);
      session = created.session;
      reply.header("mcp-session-id", created.id);
    } else if (sessionId !== undefined) {
      session = sessions.get(sessionId, caller.pool);
      if (!session) {
        return send(
          request,
          reply,
          404,
          errorResponse(
            null,
            SESSION_NOT_FOUND,
            "Session not found: the MCP session ended or is unknown; initialize a new one.",
          ),
        );
      }
    }
    const withSession: McpCaller = session ? { ...caller, environments: session.environments } : caller;

    // A client that accepts an event stream may get notifications (progress) ahead of the answers; the stream is
    // opened by the first one, so without any the answer is what it would be otherwise.
    const events = wantsEventStream(request)
      ? new McpEventStream(reply, ctx.o.config.streamHeartbeatMs)
      : undefined;
    const options = events ? { notify: events.notify.bind(events) } : {};
    const answers: JsonRpcResponse[] = [];
    for (const m of messages as Incoming[]) {
      if (m.kind === "invalid") answers.push(m.error);
      else if (m.kind === "request") {
        try {
          answers.push(await mcp.protocol.answer(m.message, withSession, options));
        } catch (err) {
          // Once the stream is open, the error handler can no longer answer: the request gets JSON-RPC's own error.
          if (!events?.opened) throw err;
          request.log.error({ err, method: m.message.method }, "mcp request failed");
          answers.push(errorResponse(m.message.id, JSON_RPC.internalError, "Internal error."));
        }
      }
    }
    if (events?.opened) {
      events.end(answers);
      return reply;
    }
    // Only notifications (notifications/initialized, ...) and responses: accepted, nothing to answer.
    if (answers.length === 0) return reply.code(202).send();
    return send(request, reply, 200, batch ? answers : answers[0]!);
  };

  const del = async (request: FastifyRequest, reply: FastifyReply) => {
    const caller = request.mcpCaller!;
    const sessionId = header(request, "mcp-session-id");
    if (sessionId === undefined) {
      return send(
        request,
        reply,
        400,
        errorResponse(
          null,
          JSON_RPC.invalidRequest,
          "DELETE ends an MCP session: send its Mcp-Session-Id header.",
        ),
      );
    }
    const session = sessions.get(sessionId, caller.pool);
    if (!session) {
      return send(
        request,
        reply,
        404,
        errorResponse(null, SESSION_NOT_FOUND, "Session not found: the MCP session ended or is unknown."),
      );
    }
    sessions.delete(sessionId);
    // The environments this MCP session launched end with it, as a shell ends with its terminal.
    await mcp.protocol.tools.end(caller.pool.key, session.environments);
    return reply.code(204).send();
  };

  app.route({
    method: ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"],
    url: `${PREFIX}/mcp`,
    schema: { params: PoolParams },
    handler: async (request, reply) => {
      if (request.method === "POST") return post(request, reply);
      if (request.method === "DELETE") return del(request, reply);
      // GET would open a stream for server-initiated messages; this server sends none, which the transport allows.
      throw new MethodNotAllowedError(request.method, ["POST", "DELETE"]);
    },
  });
}
