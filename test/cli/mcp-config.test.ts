// `sessionpool mcp-config` prints a client configuration whose endpoint and header reach the pool's MCP server:
// the JSON, VS Code and Claude shapes, the token form for a pool with API keys disabled, and the server's own
// refusal for a pool without MCP. Real server (with the data plane, so the printed configuration is used).
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { dockerBackend } from "../../src/backend-wiring.ts";
import {
  call,
  poolUrl,
  startTestServer,
  type TestServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";
import { assertOneErrorLine, cliRunner } from "./cli-helpers.ts";

// biome-ignore lint/suspicious/noExplicitAny: printed configurations are read field by field
type Json = Record<string, any>;
const RG = `mc${Math.random().toString(36).slice(2, 7)}`;
let server: TestServer;
let configDir: string;
let sp: ReturnType<typeof cliRunner>;

async function putPool(name: string, mcp: Json | undefined): Promise<void> {
  const r = await call("PUT", poolUrl(server.url, name, "2025-10-02-preview", RG), {
    body: {
      location: "eastus",
      properties: {
        scaleConfiguration: { maxConcurrentSessions: 1, readySessionInstances: 0 },
        ...(mcp ? { mcpServerSettings: mcp } : {}),
      },
    },
  });
  assert.equal(r.status, 201, r.text);
  await waitForOperation(r.headers["azure-asyncoperation"]!);
}

/** Uses a printed server entry as a client would: initialize with its URL and headers. */
async function initializeWith(entry: { url: string; headers: Record<string, string> }): Promise<number> {
  const r = await call("POST", entry.url, {
    token: null,
    headers: { "content-type": "application/json", ...entry.headers },
    raw: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize" }),
  });
  return r.status;
}

before(async () => {
  server = await startTestServer({ backend: dockerBackend({ reapIntervalMs: 100 }) });
  configDir = tempDir("sessionpool-cli-config-");
  sp = cliRunner({ url: server.url, token: server.token, configDir });
  await putPool("mcpkeys", { isMcpServerEnabled: true });
});

after(async () => {
  await server?.close();
  rmSync(configDir, { recursive: true, force: true });
});

describe("sessionpool mcp-config", () => {
  it("prints the endpoint and API key (json by default), and they work", async () => {
    const r = await sp(["mcp-config", "-n", "mcpkeys", "-g", RG]);
    assert.equal(r.code, 0, r.stderr);
    const printed = JSON.parse(r.stdout) as Json;
    assert.match(printed.endpoint, /\/sessionPools\/mcpkeys\/mcp$/);
    assert.match(printed.headers["x-ms-apikey"], /^[A-Za-z0-9_-]{43}$/);
    assert.equal(await initializeWith({ url: printed.endpoint, headers: printed.headers }), 200);
  });

  it("--client vscode and --client claude print those clients' shapes", async () => {
    const vscode = JSON.parse(
      (await sp(["mcp-config", "-n", "mcpkeys", "-g", RG, "--client", "vscode"])).stdout,
    ) as Json;
    const entry = vscode.servers.mcpkeys;
    assert.equal(entry.type, "http");
    assert.equal(await initializeWith(entry), 200);
    const claude = JSON.parse(
      (await sp(["mcp-config", "-n", "mcpkeys", "-g", RG, "--client", "claude"])).stdout,
    ) as Json;
    assert.deepEqual(claude.mcpServers.mcpkeys, entry);
  });

  it("a pool with API keys disabled gets its data-plane token as the header", async () => {
    await putPool("mcptok", { isMcpServerEnabled: true, isMcpServerApiKeyDisabled: true });
    const printed = JSON.parse((await sp(["mcp-config", "-n", "mcptok", "-g", RG])).stdout) as Json;
    assert.match(printed.headers.Authorization, /^Bearer ey/);
    assert.equal(await initializeWith({ url: printed.endpoint, headers: printed.headers }), 200);
  });

  it("a pool without MCP: one error line from the server saying how to enable it", async () => {
    await putPool("mcpnone", undefined);
    const r = await sp(["mcp-config", "-n", "mcpnone", "-g", RG]);
    assert.notEqual(r.code, 0);
    assertOneErrorLine(r, /isMcpServerEnabled/);
  });
});
