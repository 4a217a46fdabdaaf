// A pool's MCP server (issue 15): the ARM contract (mcpServerSettings in Azure's spellings, the credential
// actions, rotation), the endpoint's authentication, the raw JSON-RPC calls of Azure's tutorials, the Streamable
// HTTP transport (sessions, SSE, DELETE) and the official @modelcontextprotocol/sdk client, all against a real
// server whose environments are real sandboxes.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { armPoolUrl, multipartFile, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call, type Reply, waitForOperation } from "../helpers/server.ts";

type Json = Record<string, unknown>;
const MCP_VERSION = "2025-10-02-preview";
const RG = `mcp${Math.random().toString(36).slice(2, 7)}`;
let fx: RuntimeFixture;

const arm = (pool: string, apiVersion = MCP_VERSION) => armPoolUrl(fx.url, pool, RG, apiVersion);
const action = (pool: string, name: string) =>
  `${fx.url}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/${RG}/providers/Microsoft.App/sessionPools/${pool}/${name}?api-version=${MCP_VERSION}`;

async function putPool(pool: string, properties: Json, apiVersion = MCP_VERSION): Promise<Reply> {
  made.add(pool);
  const r = await call("PUT", arm(pool, apiVersion), { body: { location: "eastus", properties } });
  assert.ok(r.status === 201 || r.status === 200, `PUT ${pool}: ${r.status} ${r.text}`);
  const op = await waitForOperation(r.headers["azure-asyncoperation"]!);
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
  return call("GET", arm(pool, apiVersion));
}

async function fetchKey(pool: string, name = "fetchMcpServerCredentials"): Promise<string> {
  const r = await call("POST", action(pool, name));
  assert.equal(r.status, 200, r.text);
  return (r.body as { apiKey: string }).apiKey;
}

const mcpUrl = (pool: string) => `${fx.endpoint(pool, RG)}/mcp`;

/** A JSON-RPC POST as Azure's tutorials make it: Content-Type and x-ms-apikey, nothing else. */
function rpc(pool: string, key: string | null, message: unknown, headers: Record<string, string> = {}) {
  return call("POST", mcpUrl(pool), {
    token: null,
    raw: typeof message === "string" ? message : JSON.stringify(message),
    headers: {
      "content-type": "application/json",
      ...(key === null ? {} : { "x-ms-apikey": key }),
      ...headers,
    },
  });
}

let seq = 0;
async function tool(pool: string, key: string, name: string, args: Json = {}): Promise<Json> {
  const r = await rpc(pool, key, {
    jsonrpc: "2.0",
    id: String(++seq),
    method: "tools/call",
    params: { name, arguments: args },
  });
  assert.equal(r.status, 200, r.text);
  const body = r.body as { result?: Json; error?: Json };
  assert.ok(body.result, `tools/call ${name} answered ${r.text}`);
  return body.result;
}

const structured = (result: Json) => result["structuredContent"] as Json;

/** Writes the file `name` into the environment's /mnt/data through the pool's data plane (the files API). */
async function upload(pool: string, environmentId: string, name: string): Promise<void> {
  const { body, contentType } = multipartFile(name, "go");
  const r = await call(
    "POST",
    `${fx.endpoint(pool, RG)}/files?api-version=${MCP_VERSION}&identifier=${encodeURIComponent(environmentId)}`,
    { raw: body, headers: { "content-type": contentType } },
  );
  assert.equal(r.status, 200, r.text);
}

interface Progress {
  progress: number;
  total?: number;
  message?: string;
}

/**
 * Calls tool `name` with the SDK client and a progress handler. The code prints, waits in the sandbox for the file
 * `marker` in /mnt/data, then prints again; the file is written only once the first progress notification has come,
 * so the call can only end if that notification came while the code was still running.
 */
async function callWaitingForGo(
  client: Client,
  pool: string,
  environmentId: string,
  name: string,
  args: Json,
  marker: string,
): Promise<{ result: Json; progress: Progress[] }> {
  const progress: Progress[] = [];
  let firstSeen!: () => void;
  const first = new Promise<"progress">((resolve) => {
    firstSeen = () => resolve("progress");
  });
  const pending = client.callTool({ name, arguments: { environmentId, ...args } }, undefined, {
    onprogress: (p) => {
      progress.push(p);
      firstSeen();
    },
  });
  const ended = pending.then(() => "ended" as const);
  ended.catch(() => {});
  assert.equal(await Promise.race([first, ended]), "progress", "a notification came before the result");
  await upload(pool, environmentId, marker);
  const result = (await pending) as Json;
  return { result, progress };
}

/** The notifications are the output in order, with `progress` growing at each one. */
function assertProgressIsOutput(progress: Progress[], stdout: string): void {
  assert.ok(progress[0]?.message?.startsWith("f"), JSON.stringify(progress));
  assert.equal(progress.map((p) => p.message).join(""), stdout);
  for (let i = 1; i < progress.length; i++) {
    assert.ok(progress[i]!.progress > progress[i - 1]!.progress, JSON.stringify(progress));
  }
}

before(async () => {
  fx = await startRuntimeServer({ rg: RG });
  await putPool("mcppy", {
    containerType: "PythonLTS",
    scaleConfiguration: { maxConcurrentSessions: 5, readySessionInstances: 1 },
    // Azure's own examples spell it this way; ARM matches property names without regard to case.
    mcPServerSettings: { isMCPServerEnabled: true },
  });
});
/** Pools this file made (with an api-version that defines MCP, so not through fx.createPool): deleted at the end. */
const made = new Set<string>();

after(async () => {
  try {
    for (const pool of made) await fx?.deletePool(pool, RG).catch(() => {});
  } finally {
    await fx?.close();
  }
});

describe("management contract", () => {
  it("GET returns mcpServerEndpoint = poolManagementEndpoint + /mcp on the versions that define MCP", async () => {
    for (const v of ["2025-10-02-preview", "2025-02-02-preview"]) {
      const got = await call("GET", arm("mcppy", v));
      const p = (got.body as { properties: Json }).properties;
      assert.deepEqual(p["mcpServerSettings"], {
        isMcpServerEnabled: true,
        isMcpServerApiKeyDisabled: false,
        mcpServerEndpoint: `${p["poolManagementEndpoint"]}/mcp`,
      });
    }
    const stable = await call("GET", arm("mcppy", "2026-01-01"));
    assert.equal((stable.body as { properties: Json }).properties["mcpServerSettings"], undefined);
  });

  it("fetch returns a stable random key (every spelling); rotate replaces it and the old one is refused at once", async () => {
    const key = await fetchKey("mcppy");
    assert.match(key, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(await fetchKey("mcppy", "fetchMCPServerCredentials"), key);
    const init = { jsonrpc: "2.0", id: "1", method: "initialize" };
    assert.equal((await rpc("mcppy", key, init)).status, 200);

    const rotated = await call("POST", action("mcppy", "rotateMcpServerCredentials"));
    assert.equal(rotated.status, 200, rotated.text);
    const next = (rotated.body as { apiKey: string }).apiKey;
    assert.notEqual(next, key);
    const old = await rpc("mcppy", key, init);
    assert.equal(old.status, 401, old.text);
    assert.equal((await rpc("mcppy", next, init)).status, 200);
    assert.equal(await fetchKey("mcppy"), next);

    const regenerated = await fetchKey("mcppy", "regenerateCredentials");
    assert.notEqual(regenerated, next);
    assert.equal((await rpc("mcppy", next, init)).status, 401);
    assert.equal((await rpc("mcppy", regenerated, init)).status, 200);
  });

  it("the credential actions on a pool without MCP: 400 in the ARM envelope; its /mcp: 404", async () => {
    await putPool("mcpnone", { scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 } });
    const r = await call("POST", action("mcpnone", "fetchMcpServerCredentials"));
    assert.equal(r.status, 400, r.text);
    const error = (r.body as { error: Json }).error;
    assert.equal(error["code"], "McpServerNotEnabled");
    assert.equal(error["target"], "properties.mcpServerSettings.isMcpServerEnabled");
    assert.equal(r.headers["x-ms-error-code"], "McpServerNotEnabled");
    const rotate = await call("POST", action("mcpnone", "rotateMcpServerCredentials"));
    assert.equal(rotate.status, 400, rotate.text);
    const endpoint = await rpc("mcpnone", "whatever", { jsonrpc: "2.0", id: 1, method: "initialize" });
    assert.equal(endpoint.status, 404, endpoint.text);
    assert.equal(endpoint.headers["x-ms-error-code"], "McpServerNotFound");
  });

  it("PATCH follows the spec (mcpServerSettings not updatable); a PUT on an api-version without MCP keeps it", async () => {
    const patch = await call("PATCH", arm("mcppy"), {
      body: { properties: { mcpServerSettings: { isMcpServerEnabled: false } } },
    });
    assert.equal(patch.status, 400, patch.text);
    assert.equal((patch.body as { error: Json }).error["code"], "PropertyNotUpdatable");
    const stable = await call("GET", arm("mcppy", "2025-07-01"));
    const put = await call("PUT", arm("mcppy", "2025-07-01"), { body: stable.body });
    assert.equal(put.status, 200, put.text);
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    const got = await call("GET", arm("mcppy"));
    assert.equal(
      ((got.body as { properties: Json }).properties["mcpServerSettings"] as Json)["isMcpServerEnabled"],
      true,
    );
  });

  it("a CustomContainer pool cannot enable MCP: 400 naming the property", async () => {
    const r = await call("PUT", arm("mcpcustom"), {
      body: {
        location: "eastus",
        properties: {
          containerType: "CustomContainer",
          environmentId:
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/x/providers/Microsoft.App/managedEnvironments/env",
          scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
          customContainerTemplate: {
            containers: [{ image: "busybox", name: "c" }],
            ingress: { targetPort: 80 },
          },
          mcpServerSettings: { isMcpServerEnabled: true },
        },
      },
    });
    assert.equal(r.status, 400, r.text);
    const error = (r.body as { error: Json }).error;
    assert.equal(error["target"], "properties.mcpServerSettings.isMcpServerEnabled");
  });
});

describe("endpoint authentication", () => {
  const init = { jsonrpc: "2.0", id: "a", method: "initialize" };

  it("a missing key, a wrong key and a data-plane token get 401; the admin credential is accepted", async () => {
    const missing = await rpc("mcppy", null, init);
    assert.equal(missing.status, 401, missing.text);
    assert.equal(missing.headers["x-ms-error-code"], "AuthenticationFailed");
    const wrong = await rpc("mcppy", "not-the-key", init);
    assert.equal(wrong.status, 401, wrong.text);
    assert.equal(wrong.headers["x-ms-error-code"], "InvalidAuthenticationToken");
    const issued = await call("POST", action("mcppy", "getAuthtoken"));
    const token = (issued.body as { properties: Json }).properties["token"] as string;
    const bearer = await rpc("mcppy", null, init, { authorization: `Bearer ${token}` });
    assert.equal(bearer.status, 401, bearer.text);
    const admin = await call("POST", mcpUrl("mcppy"), { body: init });
    assert.equal(admin.status, 200, admin.text);
  });

  it("isMcpServerApiKeyDisabled: the pool's data-plane token instead of a key", async () => {
    await putPool("mcptoken", {
      scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 },
      mcpServerSettings: { isMcpServerEnabled: true, isMcpServerApiKeyDisabled: true },
    });
    const issued = await call("POST", action("mcptoken", "getAuthtoken"));
    const token = (issued.body as { properties: Json }).properties["token"] as string;
    const ok = await rpc("mcptoken", null, init, { authorization: `Bearer ${token}` });
    assert.equal(ok.status, 200, ok.text);
    const key = await fetchKey("mcptoken");
    assert.equal((await rpc("mcptoken", key, init)).status, 401, "keys are off");
    const other = await call("POST", action("mcppy", "getAuthtoken"));
    const otherToken = (other.body as { properties: Json }).properties["token"] as string;
    assert.equal((await rpc("mcptoken", null, init, { authorization: `Bearer ${otherToken}` })).status, 401);
  });
});

describe("Azure's raw JSON-RPC calls", () => {
  let key: string;
  before(async () => {
    key = await fetchKey("mcppy");
  });

  it("initialize, tools/list, launchShell, Python with state kept, shell both ways, files, a plot", async () => {
    const init = await rpc("mcppy", key, { jsonrpc: "2.0", id: "1", method: "initialize" });
    assert.equal(init.status, 200, init.text);
    assert.match(init.headers["content-type"] ?? "", /application\/json/);
    const result = (init.body as { result: Json }).result;
    assert.equal(typeof result["protocolVersion"], "string");
    assert.ok((result["capabilities"] as Json)["tools"]);

    const list = await rpc("mcppy", key, { jsonrpc: "2.0", id: "2", method: "tools/list" });
    const names = (list.body as { result: { tools: Json[] } }).result.tools.map((t) => t["name"]);
    for (const n of [
      "launchShell",
      "launchPythonEnvironment",
      "runShellCommandInRemoteEnvironment",
      "runPythonCodeInRemoteEnvironment",
      "uploadFileToRemoteEnvironment",
      "listFilesInRemoteEnvironment",
      "downloadFileFromRemoteEnvironment",
    ]) {
      assert.ok(names.includes(n), `tools/list has ${n}: ${names.join(", ")}`);
    }
    assert.ok(!names.includes("runJavaScriptCodeInRemoteEnvironment"), "JavaScript is for NodeLTS pools");

    const launched = await tool("mcppy", key, "launchShell");
    const environmentId = structured(launched)["environmentId"] as string;
    assert.match(environmentId, /^mcp-/);

    const set = await tool("mcppy", key, "runPythonCodeInRemoteEnvironment", {
      environmentId,
      pythonCode: "x = 41",
    });
    assert.equal(set["isError"], undefined, JSON.stringify(set));
    const read = await tool("mcppy", key, "runPythonCodeInRemoteEnvironment", {
      environmentId,
      pythonCode: "print(x + 1)",
    });
    assert.equal(structured(read)["stdout"], "42\n");

    const sh = await tool("mcppy", key, "runShellCommandInRemoteEnvironment", {
      environmentId,
      shellCommand: "echo hi; pwd",
    });
    assert.equal(structured(sh)["stdout"], "hi\n/mnt/data\n");
    assert.equal(structured(sh)["exitCode"], 0);
    const argv = await tool("mcppy", key, "runShellCommandInRemoteEnvironment", {
      environmentId,
      execCommandAndArgs: ["printf", "%s-%s", "a", "b c"],
    });
    assert.equal(structured(argv)["stdout"], "a-b c");

    const up = await tool("mcppy", key, "uploadFileToRemoteEnvironment", {
      environmentId,
      path: "notes/a.txt",
      content: "hello file",
    });
    assert.equal(structured(up)["path"], "/mnt/data/notes/a.txt");
    const bin = await tool("mcppy", key, "uploadFileToRemoteEnvironment", {
      environmentId,
      path: "b.bin",
      content: Buffer.from([0, 255, 1]).toString("base64"),
      encoding: "base64",
    });
    assert.equal(structured(bin)["sizeBytes"], 3);
    const files = await tool("mcppy", key, "listFilesInRemoteEnvironment", {
      environmentId,
      recursive: true,
    });
    const paths = (structured(files)["files"] as Json[]).map((f) => f["path"]);
    assert.ok(paths.includes("/mnt/data/notes/a.txt") && paths.includes("/mnt/data/b.bin"), paths.join(", "));
    const text = await tool("mcppy", key, "downloadFileFromRemoteEnvironment", {
      environmentId,
      path: "/mnt/data/notes/a.txt",
    });
    assert.deepEqual(text["content"], [{ type: "text", text: "hello file" }]);
    const blob = await tool("mcppy", key, "downloadFileFromRemoteEnvironment", {
      environmentId,
      path: "b.bin",
    });
    const resource = (blob["content"] as Json[])[0]!["resource"] as Json;
    assert.equal(resource["blob"], Buffer.from([0, 255, 1]).toString("base64"));
    const readBack = await tool("mcppy", key, "runPythonCodeInRemoteEnvironment", {
      environmentId,
      pythonCode: "print(open('notes/a.txt').read())",
    });
    assert.equal(structured(readBack)["stdout"], "hello file\n");

    const plot = await tool("mcppy", key, "runPythonCodeInRemoteEnvironment", {
      environmentId,
      pythonCode: "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
    });
    const images = (plot["content"] as Json[]).filter((c) => c["type"] === "image");
    assert.equal(images.length, 1, JSON.stringify(plot).slice(0, 300));
    assert.equal(images[0]!["mimeType"], "image/png");
    assert.deepEqual(
      [...Buffer.from(images[0]!["data"] as string, "base64").subarray(0, 4)],
      [0x89, 0x50, 0x4e, 0x47],
    );

    const failed = await tool("mcppy", key, "runPythonCodeInRemoteEnvironment", {
      environmentId,
      pythonCode: "1/0",
    });
    assert.equal(failed["isError"], true);
    assert.match(String(structured(failed)["error"]), /ZeroDivisionError/);

    const unknown = await tool("mcppy", key, "runShellCommandInRemoteEnvironment", {
      environmentId: "mcp-nobody-here",
      shellCommand: "true",
    });
    assert.equal(unknown["isError"], true);
    assert.match(JSON.stringify(unknown["content"]), /launchShell/);
  });

  it("malformed JSON-RPC: -32700 and -32600 with 400, -32601 and -32602 with 200; notifications 202; too large 413", async () => {
    const notJson = await rpc("mcppy", key, "{not json");
    assert.equal(notJson.status, 400);
    assert.equal((notJson.body as { error: Json }).error["code"], -32700);
    const notRpc = await rpc("mcppy", key, { hello: 1 });
    assert.equal(notRpc.status, 400);
    assert.equal((notRpc.body as { error: Json }).error["code"], -32600);
    const method = await rpc("mcppy", key, { jsonrpc: "2.0", id: 7, method: "no/such" });
    assert.equal(method.status, 200);
    assert.deepEqual(
      [(method.body as Json)["id"], (method.body as { error: Json }).error["code"]],
      [7, -32601],
    );
    const badTool = await rpc("mcppy", key, {
      jsonrpc: "2.0",
      id: 8,
      method: "tools/call",
      params: { name: "nope" },
    });
    assert.equal((badTool.body as { error: Json }).error["code"], -32602);
    const badArgs = await rpc("mcppy", key, {
      jsonrpc: "2.0",
      id: 9,
      method: "tools/call",
      params: { name: "runPythonCodeInRemoteEnvironment", arguments: { environmentId: "x" } },
    });
    assert.equal((badArgs.body as { error: Json }).error["code"], -32602);
    const note = await rpc("mcppy", key, { jsonrpc: "2.0", method: "notifications/initialized" });
    assert.equal(note.status, 202);
    assert.equal(note.text, "");
    const big = await rpc(
      "mcppy",
      key,
      JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping", params: { pad: "x".repeat(5 * 1024 * 1024) } }),
    );
    assert.equal(big.status, 413, big.text.slice(0, 200));
  });

  it("one credential cannot launch more environments than maxConcurrentSessions", async () => {
    await putPool("mcplimit", {
      scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 },
      mcpServerSettings: { isMcpServerEnabled: true },
    });
    const limitKey = await fetchKey("mcplimit");
    const first = await tool("mcplimit", limitKey, "launchShell");
    assert.equal(first["isError"], undefined, JSON.stringify(first));
    const second = await tool("mcplimit", limitKey, "launchShell");
    assert.equal(second["isError"], true);
    assert.match(JSON.stringify(second["content"]), /maxConcurrentSessions \(1\)/);
  });
});

describe("Streamable HTTP transport", () => {
  let key: string;
  before(async () => {
    key = await fetchKey("mcppy");
  });

  it("Mcp-Session-Id from initialize; SSE when preferred; GET 405; DELETE ends the session and its environments", async () => {
    const init = await rpc(
      "mcppy",
      key,
      {
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
      },
      { accept: "application/json, text/event-stream" },
    );
    assert.equal(init.status, 200, init.text);
    const sessionId = init.headers["mcp-session-id"];
    assert.ok(sessionId);
    assert.equal((init.body as { result: Json }).result["protocolVersion"], "2025-06-18");
    const h = { "mcp-session-id": sessionId, "mcp-protocol-version": "2025-06-18" };

    const sse = await rpc(
      "mcppy",
      key,
      { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "launchShell", arguments: {} } },
      { ...h, accept: "text/event-stream" },
    );
    assert.equal(sse.status, 200);
    assert.match(sse.headers["content-type"] ?? "", /^text\/event-stream/);
    const data = /^data: (.*)$/m.exec(sse.text)?.[1];
    const environmentId = (JSON.parse(data ?? "{}").result.structuredContent as Json)[
      "environmentId"
    ] as string;
    assert.match(environmentId, /^mcp-/);

    const get = await call("GET", mcpUrl("mcppy"), {
      token: null,
      headers: { "x-ms-apikey": key, ...h, accept: "text/event-stream" },
    });
    assert.equal(get.status, 405);

    const unknown = await rpc(
      "mcppy",
      key,
      { jsonrpc: "2.0", id: 3, method: "ping" },
      { "mcp-session-id": "nope" },
    );
    assert.equal(unknown.status, 404);

    const del = await call("DELETE", mcpUrl("mcppy"), { token: null, headers: { "x-ms-apikey": key, ...h } });
    assert.equal(del.status, 204, del.text);
    const after = await rpc("mcppy", key, { jsonrpc: "2.0", id: 4, method: "ping" }, h);
    assert.equal(after.status, 404, "the session is gone");
    const ended = await tool("mcppy", key, "runShellCommandInRemoteEnvironment", {
      environmentId,
      shellCommand: "true",
    });
    assert.equal(ended["isError"], true, "the environment ended with its MCP session");
    assert.match(JSON.stringify(ended["content"]), /launchShell/);
  });

  it("the official MCP SDK client lists the tools, launches an environment and keeps its state", async () => {
    const client = new Client({ name: "sessionpool-test", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl("mcppy")), {
      requestInit: { headers: { "x-ms-apikey": key } },
    });
    await client.connect(transport);
    try {
      assert.ok(transport.sessionId, "the server gave the client a session");
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === "runPythonCodeInRemoteEnvironment"));
      const launched = await client.callTool({ name: "launchShell", arguments: {} });
      const environmentId = (launched.structuredContent as Json)["environmentId"] as string;
      await client.callTool({
        name: "runPythonCodeInRemoteEnvironment",
        arguments: { environmentId, pythonCode: "import os\nstate = os.getpid()" },
      });
      const again = await client.callTool({
        name: "runPythonCodeInRemoteEnvironment",
        arguments: { environmentId, pythonCode: "print(state == os.getpid())" },
      });
      assert.equal((again.structuredContent as Json)["stdout"], "True\n");
      const sh = await client.callTool({
        name: "runShellCommandInRemoteEnvironment",
        arguments: { environmentId, shellCommand: "echo sdk" },
      });
      assert.equal((sh.structuredContent as Json)["stdout"], "sdk\n");
      await transport.terminateSession();
    } finally {
      await client.close();
    }
  });

  it("with a progressToken, the SDK client gets the output as progress notifications while the code runs", async () => {
    const client = new Client({ name: "sessionpool-progress-test", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl("mcppy")), {
      requestInit: { headers: { "x-ms-apikey": key } },
    });
    await client.connect(transport);
    try {
      const launched = await client.callTool({ name: "launchShell", arguments: {} });
      const environmentId = (launched.structuredContent as Json)["environmentId"] as string;

      const py = await callWaitingForGo(
        client,
        "mcppy",
        environmentId,
        "runPythonCodeInRemoteEnvironment",
        {
          pythonCode:
            "import os, time\nprint('first')\nwhile not os.path.exists('/mnt/data/go-py'):\n  time.sleep(0.01)\nprint('second')",
          timeoutInSeconds: 30,
        },
        "go-py",
      );
      assert.equal(py.result["isError"], undefined, JSON.stringify(py.result));
      assert.equal(structured(py.result)["stdout"], "first\nsecond\n");
      assertProgressIsOutput(py.progress, "first\nsecond\n");

      const sh = await callWaitingForGo(
        client,
        "mcppy",
        environmentId,
        "runShellCommandInRemoteEnvironment",
        {
          shellCommand: "echo first; while [ ! -e /mnt/data/go-sh ]; do sleep 0.01; done; echo second",
          timeoutInSeconds: 30,
        },
        "go-sh",
      );
      assert.equal(structured(sh.result)["stdout"], "first\nsecond\n");
      assert.equal(structured(sh.result)["exitCode"], 0);
      assertProgressIsOutput(sh.progress, "first\nsecond\n");

      // Without a progressToken the same client gets the plain answer.
      const quiet = await client.callTool({
        name: "runPythonCodeInRemoteEnvironment",
        arguments: { environmentId, pythonCode: "print('quiet')" },
      });
      assert.equal((quiet.structuredContent as Json)["stdout"], "quiet\n");
      await transport.terminateSession();
    } finally {
      await client.close();
    }
  });

  it("a progressToken from a client that does not accept an event stream: one JSON answer, as before", async () => {
    const environmentId = structured(await tool("mcppy", key, "launchShell"))["environmentId"] as string;
    const r = await rpc(
      "mcppy",
      key,
      {
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: {
          name: "runPythonCodeInRemoteEnvironment",
          arguments: { environmentId, pythonCode: "print('a')\nprint('b')" },
          _meta: { progressToken: "p1" },
        },
      },
      { accept: "application/json" },
    );
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers["content-type"] ?? "", /^application\/json/);
    const result = (r.body as { result: Json }).result;
    assert.equal(structured(result)["stdout"], "a\nb\n");
  });
});

describe("NodeLTS pools", () => {
  it("get runJavaScriptCodeInRemoteEnvironment, with state kept and its output as progress notifications", async () => {
    await putPool("mcpnode", {
      containerType: "NodeLTS",
      scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 },
      mcpServerSettings: { isMcpServerEnabled: true },
    });
    const key = await fetchKey("mcpnode");
    const list = await rpc("mcpnode", key, { jsonrpc: "2.0", id: 1, method: "tools/list" });
    const names = (list.body as { result: { tools: Json[] } }).result.tools.map((t) => t["name"]);
    assert.ok(names.includes("runJavaScriptCodeInRemoteEnvironment"));
    const environmentId = structured(await tool("mcpnode", key, "launchShell"))["environmentId"] as string;
    await tool("mcpnode", key, "runJavaScriptCodeInRemoteEnvironment", {
      environmentId,
      javaScriptCode: "globalThis.n = 20",
    });
    const js = await tool("mcpnode", key, "runJavaScriptCodeInRemoteEnvironment", {
      environmentId,
      javaScriptCode: "console.log(n + 1)",
    });
    assert.equal(structured(js)["stdout"], "21\n");
    const py = await tool("mcpnode", key, "runPythonCodeInRemoteEnvironment", {
      environmentId,
      pythonCode: "print(6 * 7)",
    });
    assert.equal(structured(py)["stdout"], "42\n");

    const client = new Client({ name: "sessionpool-node-progress-test", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(mcpUrl("mcpnode")), {
        requestInit: { headers: { "x-ms-apikey": key } },
      }),
    );
    try {
      const streamed = await callWaitingForGo(
        client,
        "mcpnode",
        environmentId,
        "runJavaScriptCodeInRemoteEnvironment",
        {
          javaScriptCode:
            "const fs = require('fs');\nconsole.log('first');\n" +
            "while (!fs.existsSync('/mnt/data/go-js')) await new Promise((r) => setTimeout(r, 10));\n" +
            "console.log('second');",
          timeoutInSeconds: 30,
        },
        "go-js",
      );
      assert.equal(structured(streamed.result)["stdout"], "first\nsecond\n");
      assertProgressIsOutput(streamed.progress, "first\nsecond\n");
    } finally {
      await client.close();
    }
  });
});
