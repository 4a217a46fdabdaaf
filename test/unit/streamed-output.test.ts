// Streamed executions' pieces that need no sandbox: partial frames in the agent client (only the documented shape
// reaches the caller, and a throwing reader breaks nothing), the Accept negotiation, and the CLI's event parser.
import assert from "node:assert/strict";
import { once } from "node:events";
import type { Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import type { FastifyRequest } from "fastify";
import type { OutputChunk } from "../../src/agent-channel/agent-client.ts";
import { EventStreamParser, type ServerEvent } from "../../src/cli/event-stream.ts";
import { wantsEventStream } from "../../src/http/dataplane/execution-stream.ts";
import { type FakePeer, startFakePeer } from "../helpers/fake-peer.ts";

let peer: FakePeer;
before(async () => {
  peer = await startFakePeer("sessionpool-streamed-");
});
after(async () => {
  await peer.close();
});

function frame(header: Record<string, unknown>): Buffer {
  const body = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(body.length, 0);
  return Buffer.concat([prefix, body]);
}

/** Reads the first request frame's header off the socket. */
async function firstRequest(socket: Socket): Promise<Record<string, unknown>> {
  const [chunk] = (await once(socket, "data")) as [Buffer];
  const length = chunk.readUInt32BE(0);
  return JSON.parse(chunk.toString("utf8", 8, 8 + length)) as Record<string, unknown>;
}

const answer = {
  ok: true,
  exitCode: 0,
  stdout: "a\n",
  stderr: "",
  stdoutTruncated: false,
  stderrTruncated: false,
  timedOut: false,
  durationMs: 1,
};

describe("partial frames in the agent client", () => {
  it("asks for them only with onOutput, and hands over only well-formed output", async () => {
    const requests: Record<string, unknown>[] = [];
    peer.onConnection = (socket) => {
      socket.on("error", () => {});
      void (async () => {
        for (;;) {
          const request = await firstRequest(socket);
          requests.push(request);
          const id = request.id;
          socket.write(
            Buffer.concat([
              frame({ id, ok: true, partial: true, stream: "stdout", text: "a" }),
              frame({ id, ok: true, partial: true, stream: "elsewhere", text: "x" }),
              frame({ id, ok: true, partial: true, stream: "stdout", text: 5 }),
              frame({ id: 999, ok: true, partial: true, stream: "stdout", text: "not yours" }),
              frame({ id, ok: true, partial: true, stream: "stdout", text: "\n" }),
              frame({ id, ...answer }),
            ]),
          );
        }
      })().catch(() => {});
    };
    const client = await peer.client();
    const chunks: OutputChunk[] = [];
    const result = await client.shell(
      { command: "echo a", timeoutMs: 1000, maxOutputChars: 10 },
      { onOutput: (c) => chunks.push(c) },
    );
    assert.equal(result.stdout, "a\n");
    assert.deepEqual(chunks, [
      { stream: "stdout", text: "a" },
      { stream: "stdout", text: "\n" },
    ]);
    assert.equal(requests[0]?.stream, true);

    // Without onOutput: no "stream" in the request, and the partial frames do not answer it.
    const plain = await client.shell({ command: "echo a", timeoutMs: 1000, maxOutputChars: 10 });
    assert.equal(plain.stdout, "a\n");
    assert.equal("stream" in (requests[1] ?? {}), false);

    // A reader that throws breaks neither the answer nor the connection.
    const thrown = await client.shell(
      { command: "echo a", timeoutMs: 1000, maxOutputChars: 10 },
      {
        onOutput: () => {
          throw new Error("reader bug");
        },
      },
    );
    assert.equal(thrown.exitCode, 0);
    assert.equal(client.closed, false);
    client.close();
  });
});

describe("Accept negotiation", () => {
  const wants = (accept: string | undefined) =>
    wantsEventStream({ headers: accept === undefined ? {} : { accept } } as FastifyRequest);
  it("streams only when text/event-stream is acceptable", () => {
    assert.equal(wants("text/event-stream"), true);
    assert.equal(wants("application/json, Text/Event-Stream;q=0.5"), true);
    assert.equal(wants(undefined), false);
    assert.equal(wants("application/json"), false);
    assert.equal(wants("*/*"), false);
    assert.equal(wants("text/event-stream;q=0"), false);
    assert.equal(wants("text/event-stream; q=0.000"), false);
  });
});

describe("the CLI's event parser", () => {
  it("parses events split anywhere, skips comments, keeps multi-line data", () => {
    const events: ServerEvent[] = [];
    const parser = new EventStreamParser((e) => events.push(e));
    const text =
      ': keep-alive\n\nevent: stdout\ndata: {"text":"é\\n"}\n\nevent: result\r\ndata: a\r\ndata: b\r\n\r\n';
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; i += 3) parser.feed(bytes.subarray(i, i + 3));
    assert.deepEqual(events, [
      { event: "stdout", data: '{"text":"é\\n"}' },
      { event: "result", data: "a\nb" },
    ]);
  });
});
