// NodeLTS and Shell pools through the data plane, on the real engine: the same API as PythonLTS for Node.js,
// shellCommand / execCommandAndArgs with the exit code as status for Shell.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { multipartFile, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call } from "../helpers/server.ts";

let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer();
  const [node, shell] = await Promise.all([
    fx.createPool("nodepool", {
      containerType: "NodeLTS",
      scaleConfiguration: { maxConcurrentSessions: 6, readySessionInstances: 1 },
    }),
    fx.createPool("shellpool", {
      containerType: "Shell",
      scaleConfiguration: { maxConcurrentSessions: 3, readySessionInstances: 1 },
    }),
  ]);
  assert.equal(node["status"], "Succeeded", JSON.stringify(node));
  assert.equal(shell["status"], "Succeeded", JSON.stringify(shell));
});
after(async () => {
  await fx?.close();
});

interface Exec {
  status: string;
  result: { stdout: string; stderr: string; executionResult?: unknown };
  error?: { code: string; message: string };
}

const execute = async (pool: string, id: string, body: Record<string, unknown>) => {
  const r = await call(
    "POST",
    `${fx.endpoint(pool)}/executions?api-version=2025-10-02-preview&identifier=${id}`,
    { body },
  );
  return { status: r.status, body: r.body as Exec, headers: r.headers };
};

describe("NodeLTS", () => {
  it("captures console output and returns the last expression", async () => {
    const r = await execute("nodepool", "node-1", {
      code: "console.log(1 + 1); 6 * 7",
      timeoutInSeconds: 30,
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.status, "Succeeded");
    assert.equal(r.body.result.stdout, "2\n");
    assert.equal(r.body.result.executionResult, 42);
  });

  it("keeps top-level declarations across executions", async () => {
    await execute("nodepool", "node-2", {
      code: "let x = 41; function inc(n) { return n + 1; }",
      timeoutInSeconds: 30,
    });
    const r = await execute("nodepool", "node-2", { code: "inc(x)", timeoutInSeconds: 30 });
    assert.equal(r.body.result.executionResult, 42);
  });

  it("reports a thrown error as a failed execution", async () => {
    const r = await execute("nodepool", "node-3", { code: 'throw new Error("boom")', timeoutInSeconds: 30 });
    assert.equal(r.status, 200);
    assert.equal(r.body.status, "Failed");
    assert.match(r.body.result.stderr, /Error: boom/);
  });

  it("interrupts a busy loop at its timeout and keeps state", async () => {
    await execute("nodepool", "node-4", { code: "const kept = 'yes'", timeoutInSeconds: 30 });
    const r = await execute("nodepool", "node-4", { code: "while (true) {}", timeoutInSeconds: 1 });
    assert.equal(r.body.status, "Failed");
    assert.equal(r.body.error?.code, "ExecutionTimeout");
    const after = await execute("nodepool", "node-4", { code: "kept", timeoutInSeconds: 30 });
    assert.equal(after.body.result.executionResult, "yes");
  });

  it("reads uploaded files from /mnt/data and reports node in /metadata", async () => {
    const { body, contentType } = multipartFile("data.json", '{"n": 5}');
    const up = await call(
      "POST",
      `${fx.endpoint("nodepool")}/files?api-version=2025-10-02-preview&identifier=node-5`,
      {
        raw: body,
        headers: { "content-type": contentType },
      },
    );
    assert.equal(up.status, 200, up.text);
    const r = await execute("nodepool", "node-5", {
      code: "JSON.parse(require('fs').readFileSync('/mnt/data/data.json', 'utf8')).n * 2",
      timeoutInSeconds: 30,
    });
    assert.equal(r.body.result.executionResult, 10);
    const meta = await call("GET", `${fx.endpoint("nodepool")}/metadata?api-version=2025-10-02-preview`);
    assert.equal(meta.status, 200);
    assert.ok(
      (meta.body as { runtimes: { name: string }[] }).runtimes.some((rt) => rt.name === "node"),
      meta.text,
    );
  });
});

describe("Shell", () => {
  it("runs shellCommand and answers with the exit code as status", async () => {
    const ok = await execute("shellpool", "sh-1", { shellCommand: "echo hello; pwd" });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, "0");
    assert.equal(ok.body.result.stdout, "hello\n/mnt/data\n");
    const failing = await execute("shellpool", "sh-1", { shellCommand: "echo oops >&2; exit 3" });
    assert.equal(failing.body.status, "3");
    assert.equal(failing.body.result.stderr, "oops\n");
  });

  it("runs execCommandAndArgs with stdin, and files persist in the session", async () => {
    const r = await execute("shellpool", "sh-2", {
      execCommandAndArgs: ["tee", "/mnt/data/in.txt"],
      stdin: "from stdin",
    });
    assert.equal(r.body.status, "0");
    assert.equal(r.body.result.stdout, "from stdin");
    const cat = await execute("shellpool", "sh-2", { shellCommand: "cat in.txt" });
    assert.equal(cat.body.result.stdout, "from stdin");
  });

  it("refuses code-interpreter fields and kills a command at its timeout", async () => {
    const refused = await execute("shellpool", "sh-3", { code: "print(1)", codeInputType: "Inline" });
    assert.equal(refused.status, 400);
    assert.equal(refused.headers["x-ms-error-code"], "InvalidExecutionRequest");
    const slow = await execute("shellpool", "sh-3", { shellCommand: "sleep 30", timeoutInSeconds: 1 });
    assert.equal(slow.status, 200);
    assert.equal(slow.body.error?.code, "ExecutionTimeout");
  });
});
