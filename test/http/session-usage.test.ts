// GET /session's `usage` over the session machinery without an engine (test/helpers/fake-driver.ts): the numbers
// come from the driver and the session's agent, /listSessions leaves them out, an unknown identifier answers 404
// and allocates nothing. The real engine's numbers are checked in test/integration/session-usage.test.ts.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { dockerBackend } from "../../src/backend-wiring.ts";
import { FAKE_USAGE, FakeSandboxDriver } from "../helpers/fake-driver.ts";
import { call, poolUrl, SUB, startTestServer, type TestServer, waitForOperation } from "../helpers/server.ts";

const API = "api-version=2025-10-02-preview";
const driver = new FakeSandboxDriver();
let s: TestServer;

before(async () => {
  s = await startTestServer({ backend: dockerBackend({ driver }) });
  const put = await call("PUT", poolUrl(s.url, "usage"), {
    body: {
      location: "eastus",
      properties: { scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 1 } },
    },
  });
  assert.equal(put.status, 201, put.text);
  assert.equal((await waitForOperation(put.headers["azure-asyncoperation"]!))["status"], "Succeeded");
});
after(async () => {
  await s?.close();
  driver.dispose();
});

const endpoint = () => `${s.url}/subscriptions/${SUB}/resourceGroups/rg1/sessionPools/usage`;
const sessionIds = async () => {
  const r = await call("GET", `${endpoint()}/listSessions?${API}`);
  assert.equal(r.status, 200, r.text);
  return (r.body as { sessions: Record<string, unknown>[] }).sessions;
};

describe("GET /session usage", () => {
  it("adds the driver's and the agent's numbers to the session, and only there", async () => {
    const exec = await call("POST", `${endpoint()}/executions?${API}&identifier=alice`, {
      body: { code: "1+1" },
    });
    assert.equal(exec.status, 200, exec.text);
    const r = await call("GET", `${endpoint()}/session?${API}&identifier=alice`);
    assert.equal(r.status, 200, r.text);
    const body = r.body as { identifier: string; usage: Record<string, unknown> };
    assert.equal(body.identifier, "alice");
    const { measuredAt, ...numbers } = body.usage;
    assert.deepEqual(numbers, {
      cpuSeconds: FAKE_USAGE.cpuSeconds,
      memoryBytes: FAKE_USAGE.memoryBytes,
      diskBytes: FAKE_USAGE.diskBytes,
    });
    assert.equal(new Date(measuredAt as string).toISOString(), measuredAt);

    const listed = await sessionIds();
    assert.deepEqual(
      listed.map((x) => x["identifier"]),
      ["alice"],
    );
    assert.equal(listed[0]?.["usage"], undefined, "listSessions costs no engine call per session");
  });

  it("answers 404 in the data-plane shape for an unknown identifier, allocating nothing", async () => {
    const before = await sessionIds();
    const creates = driver.creates.length;
    const r = await call("GET", `${endpoint()}/session?${API}&identifier=nobody`);
    assert.equal(r.status, 404, r.text);
    assert.equal(r.headers["x-ms-error-code"], "SessionNotFound");
    assert.equal((r.body as { error: { code: string } }).error.code, "SessionNotFound");
    assert.deepEqual(await sessionIds(), before);
    assert.equal(driver.creates.length, creates, "no sandbox was created");
  });
});
