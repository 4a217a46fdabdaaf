// Code execution: 2024-02-02-preview's synchronous /code/execute and the current /executions (synchronous or
// asynchronous, polled at /executions/{id}); Shell pools run shell commands through the same routes.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ExecImage, OutputChunk } from "../../agent-channel/agent-client.ts";
import { ExecutionNotFoundError } from "../../core/errors.ts";
import {
  type ExecutionRecord,
  parseExecutionInput,
  parseShellInput,
} from "../../core/sessions/executions.ts";
import type { TypeBoxProvider } from "../type-provider.ts";
import {
  apiVersionOf,
  type DataPlaneContext,
  formatMs,
  headerOf,
  identifierOf,
  keyOf,
  PREFIX,
  schemas,
} from "./dataplane-request.ts";
import { executionToWire, legacyExecutionToWire } from "./dataplane-wire.ts";
import { ExecutionEventStream, wantsEventStream } from "./execution-stream.ts";

const LEGACY_MAX_OUTPUT_CHARS = 1_000_000;
const DEFAULT_MAX_OUTPUT_CHARS = 4096;

export function executionRoutes(app: FastifyInstance, ctx: DataPlaneContext): void {
  const { executions } = ctx.o;

  const run = async (request: FastifyRequest, reply: FastifyReply, legacy: boolean) => {
    const started = performance.now();
    const apiVersion = apiVersionOf(request);
    // Streamed (docs/streaming.md): /executions only, and only synchronous ones; the others answer as before.
    const streamed = !legacy && wantsEventStream(request);
    if ((await ctx.poolTypeOf(request)) === "Shell") {
      const shellInput = parseShellInput(request.body, { defaultMaxOutputChars: DEFAULT_MAX_OUTPUT_CHARS });
      const shellSession = await ctx.acquire(request, reply);
      const relay = streamed ? new Relay() : undefined;
      const record = executions.startShell(
        shellSession.live,
        shellInput,
        headerOf(request, "operation-id"),
        relay?.options ?? {},
      );
      reply.header("operation-id", record.id);
      if (relay !== undefined) return relay.stream(reply, record, ctx.o.config.streamHeartbeatMs);
      await record.done;
      timingHeaders(reply, record, shellSession.allocationMs, performance.now() - started);
      return executionToWire(record);
    }
    const input = parseExecutionInput(request.body, {
      defaultMaxOutputChars:
        legacy || apiVersion !== "2025-10-02-preview" ? LEGACY_MAX_OUTPUT_CHARS : DEFAULT_MAX_OUTPUT_CHARS,
    });
    const { live, allocationMs } = await ctx.acquire(request, reply);
    const relay = streamed && input.executionType === "Synchronous" ? new Relay() : undefined;
    // Started before any event is sent: a full queue (429) or a duplicate id (400) still answers in JSON.
    const record = executions.start(live, input, headerOf(request, "operation-id"), relay?.options ?? {});
    const location = `${ctx.endpoint(request)}/executions/${record.id}?identifier=${encodeURIComponent(record.identifier)}&api-version=${apiVersion}`;
    reply.header("operation-id", record.id).header("operation-location", location);
    if (input.executionType === "Asynchronous" && !legacy) {
      return reply.code(202).send(executionToWire(record));
    }
    if (relay !== undefined) return relay.stream(reply, record, ctx.o.config.streamHeartbeatMs);
    await record.done;
    timingHeaders(reply, record, allocationMs, performance.now() - started);
    if (record.result?.restarted) reply.header("x-sessionpool-interpreter-restarted", "true");
    if (legacy) return legacyExecutionToWire(record);
    // 2024-10-02-preview answered every execution with 202 (the body is final all the same); later versions 200.
    if (apiVersion === "2024-10-02-preview") reply.code(202);
    return executionToWire(record);
  };

  const api = app.withTypeProvider<TypeBoxProvider>();
  api.post(`${PREFIX}/code/execute`, { schema: schemas.run }, async (request, reply) =>
    run(request, reply, true),
  );
  api.post(`${PREFIX}/executions`, { schema: schemas.run }, async (request, reply) =>
    run(request, reply, false),
  );
  api.get(`${PREFIX}/executions/:executionId`, { schema: schemas.execution }, async (request) => {
    const { executionId } = request.params;
    const record = executions.get(keyOf(request), identifierOf(request), executionId);
    if (!record) throw new ExecutionNotFoundError(executionId);
    return executionToWire(record);
  });
}

/**
 * Carries an execution's output to its event stream. The execution is started (and its output may begin) before
 * the stream exists; nothing comes before the execution reaches the interpreter, which is after this returns.
 */
class Relay {
  #events: ExecutionEventStream | undefined;
  readonly options = {
    onOutput: (chunk: OutputChunk) => this.#events?.output(chunk),
    onImage: (image: ExecImage) => this.#events?.image(image),
  };

  /** Streams the execution's events until it ends; the reply is the stream's from here on. */
  async stream(
    reply: FastifyReply,
    record: ExecutionRecord,
    heartbeatMs: number | undefined,
  ): Promise<FastifyReply> {
    const events = new ExecutionEventStream(reply, heartbeatMs);
    this.#events = events;
    await record.done;
    events.end(executionToWire(record), record.result?.images);
    this.#events = undefined;
    return reply;
  }
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
