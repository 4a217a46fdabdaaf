// The benchmark's HTTP client: one keep-alive undici Agent for every request, timed on the client side
// (request sent -> body read), the way a caller of the data plane sees it.
import { Agent, FormData, request } from "undici";

export interface TimedReply {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  text: string;
  ms: number;
}

export class BenchClient {
  readonly #agent: Agent;
  readonly #token: string;

  constructor(token: string, connections = 128) {
    this.#token = token;
    // pipelining 1: every in-flight request has its own connection, as concurrent SDK callers would.
    this.#agent = new Agent({ connections, pipelining: 1, keepAliveTimeout: 60_000 });
  }

  async send(
    method: "GET" | "PUT" | "POST" | "DELETE" | "PATCH",
    url: string,
    body?: unknown,
    timeoutMs = 120_000,
    /** The credential headers instead of the admin bearer token (e.g. an MCP server's x-ms-apikey). */
    credentials?: Record<string, string>,
    /** More headers (e.g. accept). */
    extra: Record<string, string> = {},
  ): Promise<TimedReply> {
    const headers: Record<string, string> = {
      ...(credentials ?? { authorization: `Bearer ${this.#token}` }),
      ...extra,
    };
    // A FormData body goes as multipart/form-data (undici writes the boundary); anything else as JSON.
    const payload = body === undefined ? undefined : body instanceof FormData ? body : JSON.stringify(body);
    if (typeof payload === "string") headers["content-type"] = "application/json";
    const started = performance.now();
    const res = await request(url, {
      method,
      headers,
      ...(payload === undefined ? {} : { body: payload }),
      dispatcher: this.#agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    const ms = performance.now() - started;
    let parsed: unknown = text;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) flat[k] = Array.isArray(v) ? v.join(", ") : String(v);
    return { status: res.statusCode, headers: flat, body: parsed, text, ms };
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/** Throws unless the reply is a succeeded `1+1` execution answering 2. */
export function assertTwo(reply: TimedReply, what: string): void {
  const body = reply.body as { status?: string; result?: { executionResult?: unknown } } | undefined;
  if (reply.status !== 200 || body?.status !== "Succeeded" || body.result?.executionResult !== 2) {
    throw new Error(`${what}: expected a succeeded execution answering 2, got ${reply.status} ${reply.text}`);
  }
}
