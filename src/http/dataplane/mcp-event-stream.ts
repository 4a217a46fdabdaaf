// The SSE answer to one MCP POST that sends notifications ahead of its answers (Streamable HTTP: "the server MAY send
// JSON-RPC requests and notifications before sending the JSON-RPC response"). It is opened at the first
// notification, so a call with nothing to report is answered exactly as it would be without one.
import type { ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";
import type { JsonRpcNotification, JsonRpcResponse } from "../../core/mcp/mcp-protocol.ts";
import { DEFAULT_STREAM_HEARTBEAT_MS } from "./execution-stream.ts";

export class McpEventStream {
  readonly #reply: FastifyReply;
  readonly #heartbeatMs: number;
  #raw: ServerResponse | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(reply: FastifyReply, heartbeatMs: number = DEFAULT_STREAM_HEARTBEAT_MS) {
    this.#reply = reply;
    this.#heartbeatMs = heartbeatMs;
  }

  /** Whether the response is this stream's (Fastify can no longer answer it). */
  get opened(): boolean {
    return this.#raw !== undefined;
  }

  notify(notification: JsonRpcNotification): void {
    this.#open();
    this.#message(notification);
  }

  /** The answers, then the end of the stream (the transport closes a POST's stream once its answers are sent). */
  end(answers: JsonRpcResponse[]): void {
    this.#open();
    for (const answer of answers) this.#message(answer);
    if (!this.#closed) this.#raw?.end();
    this.#stop();
  }

  #open(): void {
    if (this.#raw !== undefined) return;
    // Headers set on the reply so far (Mcp-Session-Id, ...) go out with the stream's own.
    const headers: Record<string, string | number | string[]> = {};
    for (const [name, value] of Object.entries(this.#reply.getHeaders())) {
      if (value !== undefined) headers[name] = value;
    }
    this.#reply.hijack();
    const raw = this.#reply.raw;
    this.#raw = raw;
    raw.writeHead(200, {
      ...headers,
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      // nginx and its kin buffer responses unless told not to.
      "x-accel-buffering": "no",
    });
    raw.flushHeaders();
    raw.once("close", () => this.#stop());
    // A call that goes quiet after its first output still keeps idle proxies from dropping the connection.
    this.#heartbeat = setInterval(() => this.#write(": keep-alive\n\n"), this.#heartbeatMs);
  }

  #message(message: JsonRpcNotification | JsonRpcResponse): void {
    // JSON.stringify escapes line breaks inside strings: the data is always a single `data:` line.
    this.#write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
  }

  #write(text: string): void {
    if (this.#closed || this.#raw === undefined || this.#raw.destroyed) return;
    // A slow reader makes Node buffer what it has not taken yet: at most the call's own output, which the tools'
    // output limit bounds, as it bounds the answer. A client that went away stops the events, not the execution.
    this.#raw.write(text);
  }

  #stop(): void {
    this.#closed = true;
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
  }
}
