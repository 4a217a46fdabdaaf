// Streamed executions on the real engine (docs/streaming.md): POST /executions with Accept: text/event-stream for
// PythonLTS, NodeLTS and Shell pools. Each run waits, in the sandbox, for a file the test uploads only once the
// first output event has arrived: the run can only finish if that event came while the code was still running.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Agent, request } from "undici";
import { multipartFile, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { ADMIN_TOKEN, call } from "../helpers/server.ts";

const API = "api-version=2025-10-02-preview";
const loopback = new Agent({ connect: { rejectUnauthorized: false } });

interface SseEvent {
  /** The event's name; "comment" for a `:` line (a keep-alive). */
  event: string;
  data: string;
}

/** An open event stream: the events in order, as they arrive. */
interface EventReader {
  status: number;
  headers: Record<string, string>;
  /** The next event (comments included), or undefined at the end of the stream. */
  next(): Promise<SseEvent | undefined>;
  /** Events up to and including the `result` one, comments left out. */
  rest(): Promise<SseEvent[]>;
  /** Drops the connection, as a client that goes away does. */
  abort(): void;
}

let fx: RuntimeFixture;

before(async () => {
  // A short heartbeat, so that a test can wait for one instead of 15 s.
  fx = await startRuntimeServer({ streamHeartbeatMs: 200 });
  const created = await Promise.all([
    fx.createPool("pypool", { scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 1 } }),
    fx.createPool("nodepool", {
      containerType: "NodeLTS",
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
    }),
    fx.createPool("shellpool", {
      containerType: "Shell",
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
    }),
  ]);
  for (const op of created) assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  await fx?.close();
});

const executionsUrl = (pool: string, id: string) =>
  `${fx.endpoint(pool)}/executions?${API}&identifier=${encodeURIComponent(id)}`;

async function openStream(
  pool: string,
  id: string,
  body: Record<string, unknown>,
  accept = "text/event-stream",
): Promise<EventReader> {
  const controller = new AbortController();
  const res = await request(executionsUrl(pool, id), {
    method: "POST",
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      "content-type": "application/json",
      accept,
    },
    body: JSON.stringify(body),
    dispatcher: loopback,
    signal: controller.signal,
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  });
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : String(v);
  const chunks = res.body[Symbol.asyncIterator]();
  let buffer = "";
  const decoder = new TextDecoder();
  const next = async (): Promise<SseEvent | undefined> => {
    for (;;) {
      const end = buffer.indexOf("\n\n");
      if (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (block.startsWith(":")) return { event: "comment", data: block };
        let event = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        return { event, data: data.join("\n") };
      }
      const chunk = await chunks.next();
      if (chunk.done) return undefined;
      buffer += decoder.decode(chunk.value as Buffer, { stream: true });
    }
  };
  return {
    status: res.statusCode,
    headers,
    next,
    async rest() {
      const events: SseEvent[] = [];
      for (let e = await next(); e !== undefined; e = await next()) {
        if (e.event === "comment") continue;
        events.push(e);
        if (e.event === "result") break;
      }
      return events;
    },
    abort: () => controller.abort(),
  };
}

/** The next event that is not a comment. */
async function nextEvent(reader: EventReader): Promise<SseEvent | undefined> {
  for (let e = await reader.next(); e !== undefined; e = await reader.next()) {
    if (e.event !== "comment") return e;
  }
  return undefined;
}

async function upload(pool: string, id: string, name: string): Promise<void> {
  const { body, contentType } = multipartFile(name, "go");
  const r = await call("POST", `${fx.endpoint(pool)}/files?${API}&identifier=${encodeURIComponent(id)}`, {
    raw: body,
    headers: { "content-type": contentType },
  });
  assert.equal(r.status, 200, r.text);
}

async function getExecution(pool: string, id: string, executionId: string): Promise<unknown> {
  const r = await call("GET", `${fx.endpoint(pool)}/executions/${executionId}?${API}&identifier=${id}`);
  assert.equal(r.status, 200, r.text);
  return r.body;
}

const textOf = (events: SseEvent[], name: string) =>
  events
    .filter((e) => e.event === name)
    .map((e) => (JSON.parse(e.data) as { text: string }).text)
    .join("");

interface Result {
  status: string;
  result: { stdout: string; stderr: string; executionResult?: unknown; stdoutTruncated?: boolean };
  error?: { code: string };
}

/**
 * Runs `body` streamed; the code prints "first", waits for the file `marker` in /mnt/data, then prints more. The
 * file is uploaded only once the first output event has come. Answers the events from the first one on.
 */
async function runWaitingForGo(
  pool: string,
  id: string,
  marker: string,
  body: Record<string, unknown>,
): Promise<{ reader: EventReader; events: SseEvent[]; result: Result }> {
  const reader = await openStream(pool, id, body);
  assert.equal(reader.status, 200);
  assert.match(reader.headers["content-type"] ?? "", /^text\/event-stream/);
  assert.ok(reader.headers["operation-id"], "the execution's id is in the headers");
  // Output is sent per write of the code, so "first\n" may come in one event or in two.
  const events: SseEvent[] = [];
  while (!textOf(events, "stdout").includes("first\n")) {
    const event = await nextEvent(reader);
    assert.equal(event?.event, "stdout", JSON.stringify(event));
    events.push(event!);
  }
  await upload(pool, id, marker);
  events.push(...(await reader.rest()));
  const last = events.at(-1)!;
  assert.equal(last.event, "result");
  const result = JSON.parse(last.data) as Result;
  assert.equal(await nextEvent(reader), undefined, "the stream ends after the result");
  // The result event is the execution's own body, as GET /executions/{id} (and a buffered request) has it.
  assert.deepEqual(result, await getExecution(pool, id, reader.headers["operation-id"]!));
  assert.equal(textOf(events, "stdout"), result.result.stdout);
  return { reader, events, result };
}

describe("streamed executions", () => {
  it("PythonLTS: output arrives while the code runs; the result event is the execution's body", async () => {
    const { result, events } = await runWaitingForGo("pypool", "py-stream", "go-1", {
      code:
        "import os, sys, time\nprint('first')\nwhile not os.path.exists('/mnt/data/go-1'):\n  time.sleep(0.01)\n" +
        "sys.stderr.write('warn\\n')\nprint('second')\n6 * 7",
      timeoutInSeconds: 60,
    });
    assert.equal(result.status, "Succeeded");
    assert.equal(result.result.stdout, "first\nsecond\n");
    assert.equal(result.result.executionResult, 42);
    assert.equal(textOf(events, "stderr"), "warn\n");
  });

  it("NodeLTS: output arrives while the code runs", async () => {
    const { result } = await runWaitingForGo("nodepool", "node-stream", "go-1", {
      code:
        "const fs = require('fs');\nconsole.log('first');\n" +
        "while (!fs.existsSync('/mnt/data/go-1')) await new Promise((r) => setTimeout(r, 10));\n" +
        "console.log('second');\n6 * 7",
      timeoutInSeconds: 60,
    });
    assert.equal(result.status, "Succeeded");
    assert.equal(result.result.stdout, "first\nsecond\n");
    assert.equal(result.result.executionResult, 42);
  });

  it("Shell: output arrives while the command runs; the status is the exit code", async () => {
    const { result, events } = await runWaitingForGo("shellpool", "shell-stream", "go-1", {
      shellCommand:
        "echo first; while [ ! -e /mnt/data/go-1 ]; do sleep 0.01; done; echo oops >&2; echo second; exit 3",
      timeoutInSeconds: 60,
    });
    assert.equal(result.status, "3");
    assert.equal(result.result.stdout, "first\nsecond\n");
    assert.equal(textOf(events, "stderr"), "oops\n");
  });

  it("a matplotlib figure comes as an image event with its PNG", async () => {
    const reader = await openStream("pypool", "py-stream", {
      code: "import matplotlib.pyplot as plt\nprint('plotting')\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.show()",
      timeoutInSeconds: 60,
    });
    const events = await reader.rest();
    assert.equal(textOf(events, "stdout"), "plotting\n");
    const others = events.filter((e) => e.event !== "stdout");
    assert.deepEqual(
      others.map((e) => e.event),
      ["image", "result"],
    );
    const image = JSON.parse(others[0]!.data) as { mimeType: string; base64Data: string };
    assert.equal(image.mimeType, "image/png");
    const png = Buffer.from(image.base64Data, "base64");
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
    const result = JSON.parse(others[1]!.data) as { result: { images: { base64Data: string }[] } };
    assert.equal(result.result.images[0]?.base64Data, image.base64Data);
  });

  it("plt.show() sends its figure as an image event at once, while the code still runs", async () => {
    const reader = await openStream("pypool", "py-show", {
      code:
        "import os, time\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n" +
        "while not os.path.exists('/mnt/data/go-show'):\n  time.sleep(0.01)\nprint('done')",
      timeoutInSeconds: 60,
    });
    assert.equal(reader.status, 200);
    const shown = await nextEvent(reader);
    assert.equal(shown?.event, "image", JSON.stringify(shown));
    const image = JSON.parse(shown!.data) as { mimeType: string; base64Data: string };
    assert.equal(image.mimeType, "image/png");
    assert.match(image.base64Data, /^iVBOR/);
    // The code is still waiting for this file: the image event came while it ran.
    await upload("pypool", "py-show", "go-show");
    const events = await reader.rest();
    // The output may come in more than one stdout event (however the pipe delivers it); no image comes again.
    assert.deepEqual(
      [...new Set(events.map((e) => e.event))],
      ["stdout", "result"],
      "the shown figure is not sent a second time at the end",
    );
    assert.equal(events.at(-1)?.event, "result");
    const result = JSON.parse(events.at(-1)!.data) as Result & {
      result: { images: { base64Data: string }[] };
    };
    assert.equal(result.result.stdout, "done\n");
    assert.deepEqual(
      result.result.images.map((i) => i.base64Data),
      [image.base64Data],
    );
    assert.deepEqual(result, await getExecution("pypool", "py-show", reader.headers["operation-id"]!));
  });

  it("a buffered execution has the shown figures first, then the ones left open", async () => {
    const plain = await call("POST", executionsUrl("pypool", "py-show"), {
      body: {
        code:
          "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n" +
          "plt.gcf().set_size_inches(2, 2)\nplt.plot([2, 1])",
        timeoutInSeconds: 60,
      },
    });
    assert.equal(plain.status, 200, plain.text);
    const images = (plain.body as { result: { images: { base64Data: string }[] } }).result.images;
    // plt.show() closed the first figure, so the code after it drew a second one (a 2-inch one). The PNG header's
    // width tells the two apart: the shown 6.4-inch one comes first.
    const widths = images.map((i) => Buffer.from(i.base64Data, "base64").readUInt32BE(16));
    assert.equal(widths.length, 2, JSON.stringify(widths));
    assert.ok(widths[0]! > widths[1]!, `shown figure first: widths ${JSON.stringify(widths)}`);
  });

  it("outputStreamsMaxLength cuts the streamed output where it cuts the result; timeouts hold", async () => {
    const reader = await openStream("pypool", "py-stream", {
      code: "print('x' * 50000)\nprint('after')",
      timeoutInSeconds: 60,
      outputStreamsMaxLength: 100,
    });
    const events = await reader.rest();
    const result = JSON.parse(events.at(-1)!.data) as Result;
    assert.equal(result.result.stdout, "x".repeat(100));
    assert.equal(result.result.stdoutTruncated, true);
    assert.equal(textOf(events, "stdout"), "x".repeat(100));

    const slow = await openStream("pypool", "py-stream", {
      code: "print('spinning')\nwhile True:\n  pass",
      timeoutInSeconds: 1,
    });
    const timedOut = JSON.parse((await slow.rest()).at(-1)!.data) as Result;
    assert.equal(timedOut.status, "Failed");
    assert.equal(timedOut.error?.code, "ExecutionTimeout");
    assert.equal(timedOut.result.stdout, "spinning\n");
  });

  it("idle streams get keep-alive comments", async () => {
    const reader = await openStream("pypool", "py-stream", {
      code: "import os, time\nwhile not os.path.exists('/mnt/data/go-4'):\n  time.sleep(0.01)\nprint('done')",
      timeoutInSeconds: 60,
    });
    // The code prints nothing until the file comes: what arrives meanwhile can only be a heartbeat.
    assert.deepEqual(await reader.next(), { event: "comment", data: ": keep-alive" });
    await upload("pypool", "py-stream", "go-4");
    const events = await reader.rest();
    assert.equal(textOf(events, "stdout"), "done\n");
  });

  it("a client that disconnects does not stop the execution; GET /executions/{id} has its outcome", async () => {
    const id = "py-stream";
    const reader = await openStream("pypool", id, {
      code:
        "import os, time\nprint('first')\nwhile not os.path.exists('/mnt/data/go-5'):\n  time.sleep(0.01)\n" +
        "open('/mnt/data/finished.txt', 'w').write('yes')\nprint('second')",
      timeoutInSeconds: 60,
    });
    const executionId = reader.headers["operation-id"]!;
    assert.equal((await nextEvent(reader))?.event, "stdout");
    reader.abort();
    await upload("pypool", id, "go-5");
    // Executions of a session run one at a time: this one answers after the disconnected one has finished.
    const after = await call("POST", executionsUrl("pypool", id), {
      body: { code: "open('/mnt/data/finished.txt').read()", timeoutInSeconds: 60 },
    });
    assert.equal((after.body as Result).result.executionResult, "yes");
    const outcome = (await getExecution("pypool", id, executionId)) as Result;
    assert.equal(outcome.status, "Succeeded");
    assert.equal(outcome.result.stdout, "first\nsecond\n");
  });

  it("without the header, or for an asynchronous execution, the answer is JSON as before", async () => {
    const plain = await call("POST", executionsUrl("pypool", "py-stream"), {
      body: { code: "print(1)", timeoutInSeconds: 60 },
    });
    assert.equal(plain.status, 200);
    assert.match(plain.headers["content-type"] ?? "", /^application\/json/);
    assert.equal((plain.body as Result).result.stdout, "1\n");
    assert.ok(plain.headers["x-ms-overall-execution-time"]);

    const async = await call("POST", executionsUrl("pypool", "py-stream"), {
      body: { code: "print(2)", executionType: "Asynchronous", timeoutInSeconds: 60 },
      headers: { accept: "text/event-stream" },
    });
    assert.equal(async.status, 202);
    assert.match(async.headers["content-type"] ?? "", /^application\/json/);

    const declined = await openStream(
      "pypool",
      "py-stream",
      { code: "print(3)", timeoutInSeconds: 60 },
      "text/event-stream;q=0, application/json",
    );
    assert.match(declined.headers["content-type"] ?? "", /^application\/json/);
  });

  it("a request refused before it runs answers in JSON, with its status", async () => {
    const bad = await call("POST", executionsUrl("pypool", "py-stream"), {
      body: { code: "print(1)", timeoutInSeconds: 9999 },
      headers: { accept: "text/event-stream" },
    });
    assert.equal(bad.status, 400);
    assert.match(bad.headers["content-type"] ?? "", /^application\/json/);
    assert.equal(bad.headers["x-ms-error-code"], "InvalidExecutionRequest");
    assert.equal((bad.body as { error: { code: string } }).error.code, "InvalidExecutionRequest");
  });
});
