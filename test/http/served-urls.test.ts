// Every URL the management API hands out is served: through a pool's whole lifecycle (PUT, GET, PATCH, list with
// nextLink, getAuthtoken, DELETE) in every api-version, each URL found in a response (headers and body) is
// followed with the admin credential and must not answer 404, mcpServerEndpoint included (returned only while
// the pool's MCP server is enabled).
// Real HTTP, real engine (the data plane answers at poolManagementEndpoint), real SQLite.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { dockerBackend } from "../../src/backend-wiring.ts";
import { SUPPORTED_ARM_API_VERSIONS } from "../../src/core/pools/api-versions.ts";
import {
  call,
  poolUrl,
  type Reply,
  SUB,
  startTestServer,
  type TestServer,
  waitForOperation,
} from "../helpers/server.ts";

type Json = Record<string, unknown>;
const RG = `su${Math.random().toString(36).slice(2, 7)}`;
let s: TestServer;

before(async () => {
  // One pool per page, so every list answers with a nextLink to follow.
  s = await startTestServer({ listPageSize: 1, backend: dockerBackend({ reapIntervalMs: 100 }) });
  // A second pool in the group, so the lists have a second page.
  const anchor = await call("PUT", poolUrl(s.url, "anchor", "2025-07-01", RG), { body: body() });
  assert.equal(anchor.status, 201, anchor.text);
  await waitForOperation(anchor.headers["azure-asyncoperation"]!);
});
after(async () => {
  await s?.close();
});

const url = (name: string, apiVersion: string) => poolUrl(s.url, name, apiVersion, RG);
const body = (extra: Json = {}): Json => ({
  location: "eastus",
  properties: { scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 0 }, ...extra },
});

/** Every absolute URL in a response: the LRO headers and any string in the body that is one. */
function urlsIn(r: Reply): string[] {
  const found = ["location", "azure-asyncoperation", "operation-location"]
    .map((h) => r.headers[h])
    .filter((v): v is string => v !== undefined);
  const walk = (v: unknown): void => {
    if (typeof v === "string" && /^https?:\/\//i.test(v)) found.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(r.body);
  return found;
}

/** Follows every URL in `r` with the admin credential; none may be a 404 (nor a server error). */
async function followAll(r: Reply, step: string, seen: Set<string>): Promise<void> {
  for (const u of urlsIn(r)) {
    assert.ok(u.startsWith(s.url), `${step}: ${u} is not on this server (${s.url})`);
    seen.add(u);
    const got = await call("GET", u);
    assert.notEqual(got.status, 404, `${step}: GET ${u} answered 404: ${got.text}`);
    assert.ok(got.status < 500, `${step}: GET ${u} answered ${got.status}: ${got.text}`);
  }
}

describe("every URL in a pool's lifecycle responses is served", () => {
  for (const apiVersion of SUPPORTED_ARM_API_VERSIONS) {
    it(apiVersion, async () => {
      const name = `p${apiVersion.replace(/\W/g, "")}`;
      const seen = new Set<string>();

      const put = await call("PUT", url(name, apiVersion), { body: body() });
      assert.equal(put.status, 201, put.text);
      await followAll(put, "PUT", seen);
      await waitForOperation(put.headers["azure-asyncoperation"]!);
      await followAll(put, "PUT, once provisioned", seen);

      const get = await call("GET", url(name, apiVersion));
      assert.equal(get.status, 200, get.text);
      await followAll(get, "GET", seen);
      const endpoint = (get.body as { properties: Json }).properties["poolManagementEndpoint"] as string;
      // The endpoint itself answers with a data-plane api-version (as the data plane's every route needs).
      const index = await call("GET", `${endpoint}?api-version=2025-10-02-preview`);
      assert.equal(index.status, 200, index.text);

      const patch = await call("PATCH", url(name, apiVersion), { body: { tags: { step: "patch" } } });
      assert.equal(patch.status, 202, patch.text);
      await followAll(patch, "PATCH", seen);
      await waitForOperation(patch.headers["azure-asyncoperation"]!);
      await followAll(patch, "PATCH, once done", seen);

      for (const list of [
        `${s.url}/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/sessionPools?api-version=${apiVersion}`,
        `${s.url}/subscriptions/${SUB}/providers/Microsoft.App/sessionPools?api-version=${apiVersion}`,
      ]) {
        let page = await call("GET", list);
        for (let pages = 0; ; pages++) {
          assert.equal(page.status, 200, page.text);
          assert.ok(pages < 50, "nextLink pages end");
          await followAll(page, "list", seen);
          const next = (page.body as { nextLink?: string }).nextLink;
          if (next === undefined) break;
          page = await call("GET", next);
        }
      }

      const token = await call("POST", url(name, apiVersion).replace("?", "/getAuthtoken?"));
      assert.equal(token.status, 200, token.text);
      await followAll(token, "getAuthtoken", seen);

      const del = await call("DELETE", url(name, apiVersion));
      assert.equal(del.status, 202, del.text);
      await followAll(del, "DELETE", seen);
      await waitForOperation(del.headers["azure-asyncoperation"]!);
      await followAll(del, "DELETE, once done", seen);

      assert.ok(seen.has(endpoint), "poolManagementEndpoint was followed");
      assert.ok(
        [...seen].some((u) => u.includes("skipToken")),
        "a nextLink was followed",
      );
      assert.ok(
        [...seen].some((u) => u.includes("/sessionPoolOperationResults/")) &&
          [...seen].some((u) => u.includes("/sessionPoolOperationStatuses/")),
        "operation URLs were followed",
      );
    });
  }
});

describe("the MCP endpoint is handed out only while it is served", () => {
  const MCP_VERSION = "2025-10-02-preview";
  const mcpOf = (r: Reply) => (r.body as { properties: Json }).properties["mcpServerSettings"] as Json;

  it("isMcpServerEnabled: true (Azure's spelling) returns mcpServerEndpoint, which answers", async () => {
    const put = await call("PUT", url("mcpon", MCP_VERSION), {
      body: body({ mcPServerSettings: { isMCPServerEnabled: true } }),
    });
    assert.equal(put.status, 201, put.text);
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    const got = await call("GET", url("mcpon", MCP_VERSION));
    const endpoint = (got.body as { properties: Json }).properties["poolManagementEndpoint"] as string;
    assert.deepEqual(mcpOf(got), {
      isMcpServerEnabled: true,
      isMcpServerApiKeyDisabled: false,
      mcpServerEndpoint: `${endpoint}/mcp`,
    });
    const seen = new Set<string>();
    await followAll(got, "GET of an MCP pool", seen);
    assert.ok(seen.has(`${endpoint}/mcp`), "mcpServerEndpoint was followed");
  });

  it("keeps mcpServerSettings without an endpoint while disabled; a PUT of what GET returned is accepted", async () => {
    const put = await call("PUT", url("mcpoff", MCP_VERSION), {
      body: body({ mcpServerSettings: { isMcpServerEnabled: false } }),
    });
    assert.equal(put.status, 201, put.text);
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    const got = await call("GET", url("mcpoff", MCP_VERSION));
    assert.deepEqual(mcpOf(got), { isMcpServerEnabled: false, isMcpServerApiKeyDisabled: false });
    const back = await call("PUT", url("mcpoff", MCP_VERSION), { body: got.body });
    assert.equal(back.status, 200, back.text);
    await waitForOperation(back.headers["azure-asyncoperation"]!);
  });
});
