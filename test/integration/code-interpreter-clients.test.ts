// The exact requests real clients send (LangChain's SessionsPythonREPLTool, Semantic Kernel's SessionsPythonTool,
// LlamaIndex's code interpreter, `az containerapp session code-interpreter`), against the real engine.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { multipartFile, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call } from "../helpers/server.ts";

const POOL = "clients";
let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer();
  const op = await fx.createPool(POOL, {
    scaleConfiguration: { maxConcurrentSessions: 8, readySessionInstances: 2 },
  });
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  await fx?.close();
});

const legacy = (path: string, id: string) =>
  `${fx.endpoint(POOL)}/${path}?identifier=${encodeURIComponent(id)}&api-version=2024-02-02-preview`;

describe("LangChain SessionsPythonREPLTool (2024-02-02-preview)", () => {
  const id = "langchain-3f0c6d2e-7a41-4a59-9e1f-1c2b3d4e5f60";
  const execute = (code: string) =>
    call("POST", legacy("code/execute", id), {
      body: { properties: { codeInputType: "inline", executionType: "synchronous", code } },
    });

  it("runs print(1+1)", async () => {
    const r = await execute("print(1+1)");
    assert.equal(r.status, 200);
    const props = (r.body as { properties: Record<string, unknown> }).properties;
    assert.equal(props["status"], "Success");
    assert.equal(props["stdout"], "2\n");
    assert.equal(props["stderr"], "");
    assert.equal(typeof props["executionTimeInMilliseconds"], "number");
  });

  it("keeps state across calls and returns the last expression's value", async () => {
    assert.equal((await execute("x = 41")).status, 200);
    const r = await execute("x + 1");
    assert.equal((r.body as { properties: { result: unknown } }).properties.result, 42);
  });

  it("uploads a file, reads it from code, lists and downloads it", async () => {
    const { body, contentType } = multipartFile("data.csv", "a,b\n1,2\n");
    const up = await call("POST", legacy("files/upload", id), {
      raw: body,
      headers: { "content-type": contentType },
    });
    assert.equal(up.status, 200, up.text);
    const entry = (up.body as { value: { properties: { filename: string; size: number } }[] }).value[0]!;
    assert.equal(entry.properties.filename, "data.csv");
    assert.equal(entry.properties.size, 8);

    const read = await execute("open('/mnt/data/data.csv').read()");
    assert.equal((read.body as { properties: { result: unknown } }).properties.result, "a,b\n1,2\n");

    const list = await call("GET", legacy("files", id));
    assert.equal(list.status, 200);
    const names = (list.body as { value: { properties: { filename: string } }[] }).value.map(
      (v) => v.properties.filename,
    );
    assert.ok(names.includes("data.csv"), JSON.stringify(list.body));

    const down = await call("GET", legacy("files/content/data.csv", id));
    assert.equal(down.status, 200);
    assert.equal(down.text, "a,b\n1,2\n");
  });

  it("returns a matplotlib figure as an image result", async () => {
    const r = await execute("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.show()");
    const result = (r.body as { properties: { result: Record<string, string> } }).properties.result;
    assert.equal(result["type"], "image");
    assert.equal(result["format"], "png");
    const png = Buffer.from(result["base64_data"]!, "base64");
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
  });

  it("reports an exception as a failed execution with the traceback, HTTP 200", async () => {
    const r = await execute("1/0");
    assert.equal(r.status, 200);
    const props = (r.body as { properties: Record<string, string> }).properties;
    assert.equal(props["status"], "Failure");
    assert.match(props["stderr"]!, /ZeroDivisionError: division by zero/);
    assert.match(props["stderr"]!, /Traceback/);
  });

  it("deletes its session (DELETE /session, 2025-10-02-preview) and the next call starts fresh", async () => {
    const del = await call(
      "DELETE",
      `${fx.endpoint(POOL)}/session?identifier=${id}&api-version=2025-10-02-preview`,
    );
    assert.equal(del.status, 204);
    const r = await execute("'x' in globals()");
    assert.equal((r.body as { properties: { result: unknown } }).properties.result, false);
  });
});

describe("Semantic Kernel SessionsPythonTool (2024-02-02-preview)", () => {
  const id = "sk-session-0001";
  it("executes with timeoutInSeconds 100 and handles files", async () => {
    const r = await call("POST", legacy("code/execute", id), {
      body: {
        properties: {
          codeInputType: "inline",
          executionType: "synchronous",
          code: "import sys\nprint(sys.version_info[0])",
          timeoutInSeconds: 100,
        },
      },
    });
    assert.equal(r.status, 200);
    assert.equal((r.body as { properties: { stdout: string } }).properties.stdout, "3\n");

    const { body, contentType } = multipartFile("/mnt/data/notes.txt", "hello sk");
    const up = await call("POST", legacy("files/upload", id), {
      raw: body,
      headers: { "content-type": contentType },
    });
    assert.equal(up.status, 200, up.text);
    assert.equal(
      (up.body as { value: { properties: { filename: string } }[] }).value[0]!.properties.filename,
      "notes.txt",
    );
    const down = await call("GET", legacy("files/content/notes.txt", id));
    assert.equal(down.text, "hello sk");
  });
});

describe("az containerapp session code-interpreter (2025-02-02-preview)", () => {
  const id = "az-cli-session";
  const url = (path: string, extra = "") =>
    `${fx.endpoint(POOL)}/${path}?${extra}identifier=${id}&api-version=2025-02-02-preview`;

  it("execute sends the wrapped properties body", async () => {
    const r = await call("POST", url("executions"), {
      body: {
        properties: {
          identifier: id,
          codeInputType: "inline",
          executionType: "synchronous",
          timeoutInSeconds: 60,
          code: 'print("Hello world")',
        },
      },
    });
    assert.equal(r.status, 200);
    const body = r.body as { status: string; result: { stdout: string }; id: string; identifier: string };
    assert.equal(body.status, "Succeeded");
    assert.equal(body.result.stdout, "Hello world\n");
    assert.equal(body.identifier, id);
    assert.ok(r.headers["operation-id"]);
    const again = await call(
      "GET",
      `${fx.endpoint(POOL)}/executions/${body.id}?identifier=${id}&api-version=2025-02-02-preview`,
    );
    assert.equal(again.status, 200);
    assert.equal((again.body as { status: string }).status, "Succeeded");
  });

  it("upload-file, list-files, show-file-content, show-file-metadata, delete-file", async () => {
    const { body, contentType } = multipartFile("report.txt", "quarterly numbers");
    const up = await call("POST", url("files", "path=docs&"), {
      raw: body,
      headers: { "content-type": contentType },
    });
    assert.equal(up.status, 200, up.text);
    assert.deepEqual(
      {
        name: (up.body as Record<string, unknown>)["name"],
        size: (up.body as Record<string, unknown>)["sizeInBytes"],
      },
      { name: "report.txt", size: 17 },
    );

    const list = await call("GET", url("files", "path=docs&"));
    const files = (list.body as { value: { name: string; type: string; directory: string }[] }).value;
    assert.deepEqual(
      files.map((f) => [f.name, f.type, f.directory]),
      [["report.txt", "file", "docs"]],
    );

    const root = await call("GET", url("files", "path=&"));
    assert.ok(
      (root.body as { value: { name: string; type: string }[] }).value.some(
        (f) => f.name === "docs" && f.type === "directory",
      ),
    );

    const content = await call("GET", url("files/report.txt/content", "path=docs&"));
    assert.equal(content.status, 200);
    assert.equal(content.text, "quarterly numbers");

    const meta = await call("GET", url("files/report.txt", "path=docs&"));
    assert.equal(meta.status, 200);
    assert.equal((meta.body as { contentType: string }).contentType, "text/plain");

    const fromCode = await call("POST", url("executions"), {
      body: { code: "open('/mnt/data/docs/report.txt').read()", timeoutInSeconds: 10 },
    });
    assert.equal(
      (fromCode.body as { result: { executionResult: unknown } }).result.executionResult,
      "quarterly numbers",
    );

    const del = await call("DELETE", url("files/report.txt", "path=docs&"));
    assert.equal(del.status, 204);
    const gone = await call("GET", url("files/report.txt", "path=docs&"));
    assert.equal(gone.status, 404);
    assert.equal(gone.headers["x-ms-error-code"], "FileNotFound");
  });
});

describe("current API (2025-10-02-preview)", () => {
  it("runs an asynchronous execution that is polled to completion", async () => {
    const base = `${fx.endpoint(POOL)}/executions`;
    const r = await call("POST", `${base}?identifier=async-1&api-version=2025-10-02-preview`, {
      body: {
        codeInputType: "Inline",
        executionType: "Asynchronous",
        code: "import time\ntime.sleep(0.3)\n6*7",
        timeoutInSeconds: 30,
      },
      headers: { "operation-id": "my-operation-0001" },
    });
    assert.equal(r.status, 202);
    assert.equal((r.body as { status: string }).status, "Running");
    assert.equal(r.headers["operation-id"], "my-operation-0001");
    const location = r.headers["operation-location"]!;
    assert.match(location, /\/executions\/my-operation-0001\?/);
    let body: { status: string; result?: { executionResult: unknown } } = { status: "Running" };
    for (let i = 0; i < 100 && body.status === "Running"; i++) {
      await new Promise((res) => setTimeout(res, 50));
      body = (await call("GET", location)).body as typeof body;
    }
    assert.equal(body.status, "Succeeded");
    assert.equal(body.result?.executionResult, 42);
  });

  it("interrupts a timeout, keeps the session's state and says why", async () => {
    await fx.exec(POOL, "timeout-1", "x = 5");
    const r = await fx.exec(POOL, "timeout-1", "import time\ntime.sleep(30)", { timeoutInSeconds: 1 });
    assert.equal(r.status, 200);
    const body = r.body as { status: string; error: { code: string }; result: { stderr: string } };
    assert.equal(body.status, "Failed");
    assert.equal(body.error.code, "ExecutionTimeout");
    assert.match(body.result.stderr, /KeyboardInterrupt/);
    const after = await fx.exec(POOL, "timeout-1", "x");
    assert.equal((after.body as { result: { executionResult: unknown } }).result.executionResult, 5);
  });

  it("restarts an interpreter that ignores the interrupt and says so", async () => {
    await fx.exec(POOL, "stubborn-1", "y = 1");
    const code =
      "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass";
    const r = await fx.exec(POOL, "stubborn-1", code, { timeoutInSeconds: 1 });
    assert.equal(r.status, 200);
    assert.equal(r.headers["x-sessionpool-interpreter-restarted"], "true");
    assert.match((r.body as { error: { message: string } }).error.message, /restarted/);
    const after = await fx.exec(POOL, "stubborn-1", "'y' in globals()");
    assert.equal((after.body as { result: { executionResult: unknown } }).result.executionResult, false);
  });

  it("bounds output by outputStreamsMaxLength", async () => {
    const r = await fx.exec(POOL, "output-1", "print('x' * 10000)", { outputStreamsMaxLength: 100 });
    const result = (r.body as { result: { stdout: string; stdoutTruncated: boolean } }).result;
    assert.equal(result.stdout.length, 100);
    assert.equal(result.stdoutTruncated, true);
  });

  it("answers GET /session, /listSessions and /metadata", async () => {
    await fx.exec(POOL, "listed-1", "1");
    const s = await call(
      "GET",
      `${fx.endpoint(POOL)}/session?identifier=listed-1&api-version=2025-10-02-preview`,
    );
    assert.equal(s.status, 200);
    const session = s.body as {
      identifier: string;
      createdAt: string;
      lastAccessedAt: string;
      expireAt: string;
      etag: string;
    };
    assert.equal(session.identifier, "listed-1");
    const cooldownMs = Date.parse(session.expireAt) - Date.parse(session.lastAccessedAt);
    assert.equal(cooldownMs, 300_000);
    const list = await call("GET", `${fx.endpoint(POOL)}/listSessions?api-version=2025-10-02-preview`);
    assert.ok(
      (list.body as { sessions: { identifier: string }[] }).sessions.some((x) => x.identifier === "listed-1"),
    );
    const meta = await call("GET", `${fx.endpoint(POOL)}/metadata?api-version=2025-10-02-preview`);
    assert.equal(meta.status, 200);
    const m = meta.body as {
      runtimes: { name: string; version: string }[];
      preInstalledPackages: { name: string }[];
    };
    assert.equal(m.runtimes[0]?.name, "python");
    assert.match(m.runtimes[0]?.version ?? "", /^3\.\d+/);
    const names = m.preInstalledPackages.map((p) => p.name.toLowerCase());
    for (const pkg of ["numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "ipython"]) {
      assert.ok(names.includes(pkg), `${pkg} missing from ${names.join(",")}`);
    }
  });
});
