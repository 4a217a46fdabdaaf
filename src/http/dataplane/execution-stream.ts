// Streamed executions (docs/streaming.md): `POST /executions` with `Accept: text/event-stream` answers server-sent
// events, the output and the figures shown as the code produces them, the figures left open, then the very body the
// request would get without them.
import type { ServerResponse } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ExecImage, OutputChunk } from "../../agent-channel/agent-client.ts";

/** Idle proxies and load balancers drop a silent connection after 30 to 60 s; a comment every 15 s keeps it. */
export const DEFAULT_STREAM_HEARTBEAT_MS = 15_000;

/** Whether the request accepts text/event-stream (and not with q=0). Anything else gets today's JSON answer. */
export function wantsEventStream(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  if (typeof accept !== "string") return false;
  return accept.split(",").some((range) => {
    const [type, ...params] = range.split(";");
    return (
      type?.trim().toLowerCase() === "text/event-stream" &&
      !params.some((p) => /^\s*q\s*=\s*0(\.0{0,3})?\s*$/i.test(p))
    );
  });
}

/**
 * One execution's event stream. It takes the response over from Fastify (the status and headers are sent at once,
 * so a client knows the execution was accepted); after that nothing can answer in JSON any more, which is why the
 * execution is started, and may be refused, before a stream is made. A client that goes away stops the events,
 * never the execution.
 */
export class ExecutionEventStream {
  readonly #raw: ServerResponse;
  readonly #heartbeat: NodeJS.Timeout;
  #closed = false;
  /** Images sent as they were shown: the answer's first ones (the agent puts shown figures first, in order). */
  #imagesSent = 0;

  constructor(reply: FastifyReply, heartbeatMs: number = DEFAULT_STREAM_HEARTBEAT_MS) {
    if (!Number.isSafeInteger(heartbeatMs) || heartbeatMs <= 0) {
      throw new RangeError(`heartbeatMs must be a positive whole number (got ${String(heartbeatMs)})`);
    }
    // The headers the route has set (operation-id, the session's x-ms-*) go out with the stream's own.
    const headers: Record<string, string | number | string[]> = {};
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) headers[name] = value;
    }
    reply.hijack();
    this.#raw = reply.raw;
    this.#raw.writeHead(200, {
      ...headers,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      // nginx and its kin buffer responses unless told not to.
      "x-accel-buffering": "no",
    });
    this.#raw.flushHeaders();
    this.#raw.once("close", () => this.#stop());
    this.#heartbeat = setInterval(() => this.#write(": keep-alive\n\n"), heartbeatMs);
  }

  /** Whether events still go anywhere (false once the client has gone or the stream has ended). */
  get open(): boolean {
    return !this.#closed;
  }

  output(chunk: OutputChunk): void {
    this.#event(chunk.stream, { text: chunk.text });
  }

  /** A figure shown while the code runs (plt.show()). */
  image(image: ExecImage): void {
    this.#imagesSent += 1;
    this.#event("image", { mimeType: image.mime, base64Data: image.base64 });
  }

  /**
   * The last events: the answer's `images` not sent as they were shown (the figures left open at the end), then
   * `result`, whose data is the JSON body of the finished execution; then the response ends.
   */
  end(body: unknown, images: readonly ExecImage[] = []): void {
    for (const image of images.slice(this.#imagesSent))
      this.#event("image", { mimeType: image.mime, base64Data: image.base64 });
    this.#event("result", body);
    if (!this.#closed) this.#raw.end();
    this.#stop();
  }

  #event(name: string, data: unknown): void {
    // JSON.stringify escapes line breaks inside strings: the data is always a single `data:` line.
    this.#write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #write(text: string): void {
    if (this.#closed || this.#raw.destroyed) return;
    // A slow reader makes Node buffer what it has not taken yet: at most the execution's own output, which
    // outputStreamsMaxLength and the result limit bound, as they bound a buffered answer.
    this.#raw.write(text);
  }

  #stop(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
  }
}
