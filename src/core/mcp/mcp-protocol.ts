// The Model Context Protocol's JSON-RPC 2.0 side, without HTTP: parse a message (or a batch), answer initialize,
// ping, tools/list and tools/call, and say which JSON-RPC error a bad message gets. The transport
// (http/dataplane/mcp-routes.ts) picks HTTP statuses, sessions and SSE framing.
import type { OutputChunk } from "../../agent-channel/agent-client.ts";
import { isPlainObject } from "../pools/body-shape.ts";
import { type McpCaller, type McpTools, ToolArgumentsError, UnknownToolError } from "./mcp-tools.ts";

/** The protocol revisions this server speaks, newest first; an unknown requested one gets the newest. */
export const PROTOCOL_VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"] as const;

export const JSON_RPC = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
} as const;

export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  jsonrpc: "2.0";
  id: JsonRpcId;
  method: string;
  params?: Record<string, unknown>;
}

export interface JsonRpcResponse {
  jsonrpc: "2.0";
  id: JsonRpcId | null;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** A message the server sends that needs no answer (here: notifications/progress). */
export interface JsonRpcNotification {
  jsonrpc: "2.0";
  method: string;
  params?: Record<string, unknown>;
}

/** How an answer may speak before it is ready; without it, nothing is sent before the answer. */
export interface AnswerOptions {
  /** Sends a notification to the client now, ahead of the answer (the transport has a stream open for it). */
  notify?: (notification: JsonRpcNotification) => void;
}

/** One message of a POST body, classified. */
export type Incoming =
  | { kind: "request"; message: JsonRpcRequest }
  | { kind: "notification"; method: string }
  /** A client's answer to a server request: this server sends none, so it is accepted and dropped. */
  | { kind: "response" }
  | { kind: "invalid"; error: JsonRpcResponse };

export function errorResponse(id: JsonRpcId | null, code: number, message: string): JsonRpcResponse {
  return { jsonrpc: "2.0", id, error: { code, message } };
}

/** The messages of a POST body, or the parse error (-32700) a body that is not JSON gets. */
export function parseBody(
  text: string,
): { ok: true; batch: boolean; messages: Incoming[] } | { ok: false; error: JsonRpcResponse } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return {
      ok: false,
      error: errorResponse(
        null,
        JSON_RPC.parseError,
        `Parse error: the body is not JSON (${(err as Error).message}).`,
      ),
    };
  }
  if (Array.isArray(value)) {
    if (value.length === 0) {
      return {
        ok: false,
        error: errorResponse(null, JSON_RPC.invalidRequest, "Invalid Request: an empty batch."),
      };
    }
    return { ok: true, batch: true, messages: value.map(classify) };
  }
  return { ok: true, batch: false, messages: [classify(value)] };
}

function validId(id: unknown): id is JsonRpcId {
  return typeof id === "string" || (typeof id === "number" && Number.isFinite(id));
}

export function classify(value: unknown): Incoming {
  const invalid = (why: string, id: JsonRpcId | null = null): Incoming => ({
    kind: "invalid",
    error: errorResponse(id, JSON_RPC.invalidRequest, `Invalid Request: ${why}`),
  });
  if (!isPlainObject(value)) return invalid("a JSON-RPC message is a JSON object.");
  const id = value["id"];
  if (value["jsonrpc"] !== "2.0") return invalid("'jsonrpc' must be \"2.0\".", validId(id) ? id : null);
  const method = value["method"];
  if (method === undefined) {
    if (validId(id) && ("result" in value || "error" in value)) return { kind: "response" };
    return invalid("a message needs a 'method' (or is a response with 'result' or 'error').");
  }
  if (typeof method !== "string" || method === "")
    return invalid("'method' must be a string.", validId(id) ? id : null);
  const params = value["params"];
  if (params !== undefined && !isPlainObject(params)) {
    return invalid("'params' must be an object.", validId(id) ? id : null);
  }
  if (!("id" in value)) return { kind: "notification", method };
  if (!validId(id)) return invalid("'id' must be a string or a number.");
  return {
    kind: "request",
    message: { jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) },
  };
}

/** The protocol revision to answer initialize with: the client's when this server speaks it, else the newest. */
export function negotiateVersion(requested: unknown): string {
  return typeof requested === "string" && (PROTOCOL_VERSIONS as readonly string[]).includes(requested)
    ? requested
    : PROTOCOL_VERSIONS[0];
}

export const SERVER_INFO = {
  name: "sessionpool MCP server",
  title: "sessionpool dynamic sessions",
  version: "0.1.0",
};

export class McpProtocol {
  readonly #tools: McpTools;

  constructor(tools: McpTools) {
    this.#tools = tools;
  }

  get tools(): McpTools {
    return this.#tools;
  }

  /** The answer to one request: a result, or a JSON-RPC error (a tool's own failure is a result with isError). */
  async answer(
    request: JsonRpcRequest,
    caller: McpCaller,
    options: AnswerOptions = {},
  ): Promise<JsonRpcResponse> {
    const { id, method } = request;
    const params = request.params ?? {};
    switch (method) {
      case "initialize":
        return {
          jsonrpc: "2.0",
          id,
          result: {
            protocolVersion: negotiateVersion(params["protocolVersion"]),
            capabilities: { tools: { listChanged: false } },
            serverInfo: SERVER_INFO,
            instructions:
              "Call launchShell to get an environmentId (an isolated sandbox session), then run shell commands, Python code and file operations in it with that environmentId. State is kept between calls.",
          },
        };
      case "ping":
        return { jsonrpc: "2.0", id, result: {} };
      case "tools/list":
        return { jsonrpc: "2.0", id, result: { tools: this.#tools.list(caller.pool) } };
      case "tools/call": {
        const name = params["name"];
        const args = params["arguments"] ?? {};
        if (typeof name !== "string" || !isPlainObject(args)) {
          return errorResponse(
            id,
            JSON_RPC.invalidParams,
            "Invalid params: tools/call needs 'name' (a string) and optional 'arguments' (an object).",
          );
        }
        try {
          const onOutput = progressReporter(params, options.notify);
          const result = await this.#tools.call(name, args, caller, onOutput ? { onOutput } : {});
          return { jsonrpc: "2.0", id, result };
        } catch (err) {
          if (err instanceof ToolArgumentsError || err instanceof UnknownToolError) {
            return errorResponse(id, JSON_RPC.invalidParams, `Invalid params: ${err.message}`);
          }
          throw err;
        }
      }
      default:
        return errorResponse(id, JSON_RPC.methodNotFound, `Method not found: '${method}'.`);
    }
  }
}

/**
 * A request's `_meta.progressToken` asks for notifications/progress while it runs: each carries the output produced
 * since the previous one as its `message`, and as `progress` the characters of output so far (it only grows; the
 * total is not known in advance). No token, or no way to send ahead of the answer: no reporter.
 */
function progressReporter(
  params: Record<string, unknown>,
  notify: AnswerOptions["notify"],
): ((chunk: OutputChunk) => void) | undefined {
  const meta = params["_meta"];
  const token = isPlainObject(meta) ? meta["progressToken"] : undefined;
  if (
    notify === undefined ||
    !(typeof token === "string" || (typeof token === "number" && Number.isFinite(token)))
  )
    return undefined;
  let progress = 0;
  return (chunk) => {
    progress += chunk.text.length;
    notify({
      jsonrpc: "2.0",
      method: "notifications/progress",
      params: { progressToken: token, progress, message: chunk.text },
    });
  };
}
