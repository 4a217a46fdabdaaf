// Regression (found by the load test, bench/load.ts): a warm sandbox the reconciler was still creating when cold
// starts filled the pool joined the ready list anyway, and the next new identifier claimed it, so the pool held
// maxConcurrentSessions + 1 sessions (and one sandbox beyond the limit sat warm). A driver whose creations the
// test holds and releases reproduces the interleaving without an engine.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { dockerBackend } from "../../src/backend-wiring.ts";
import { FakeSandboxDriver } from "../helpers/fake-driver.ts";
import { call, poolUrl, startTestServer, type TestServer, waitForOperation } from "../helpers/server.ts";

let web: Server;
let port: number;
let driver: FakeSandboxDriver;
let fx: TestServer;

before(async () => {
  web = createServer((_req, res) => res.end("ok"));
  await new Promise<void>((resolve) => web.listen(0, "127.0.0.1", resolve));
  port = (web.address() as AddressInfo).port;
  driver = new FakeSandboxDriver();
  fx = await startTestServer({ backend: dockerBackend({ driver }) });
});
after(async () => {
  for (const release of driver?.held.splice(0) ?? []) release();
  await fx?.close();
  web?.closeAllConnections();
  await new Promise((resolve) => web?.close(resolve));
});

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

test("a warm sandbox finished after cold starts filled the pool is not a session beyond the limit", async () => {
  const put = await call("PUT", poolUrl(fx.url, "heldpool"), {
    body: {
      location: "eastus",
      properties: {
        containerType: "CustomContainer",
        environmentId:
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.App/managedEnvironments/env",
        scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
        customContainerTemplate: {
          containers: [
            { image: "example.invalid/held:1", name: "held", resources: { cpu: 0.25, memory: "0.5Gi" } },
          ],
          ingress: { targetPort: port },
        },
      },
    },
  });
  assert.ok(put.status === 201 || put.status === 200, put.text);
  assert.equal((await waitForOperation(put.headers["azure-asyncoperation"]!))["status"], "Succeeded");
  const endpoint = `${fx.url}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/sessionPools/heldpool`;
  const get = (identifier: string) => call("GET", `${endpoint}/hello?identifier=${identifier}`);

  // The one warm sandbox is claimed; its refill is held mid-creation.
  driver.hold = true;
  assert.equal((await get("first")).status, 200);
  await until("the refill is creating", () => driver.held.length === 1);

  // Meanwhile a second identifier cold-starts and takes the last slot.
  driver.hold = false;
  assert.equal((await get("second")).status, 200);
  assert.equal(driver.live.length, 2);

  // The refill finishes now: the pool is full, so it must not become a session for a third identifier.
  driver.held.shift()!();
  await until("the refill has finished", async () => {
    const metrics = await call("GET", `${fx.url}/metrics`);
    return /sessionpool_pool_pending_sessions\{pool="[^"]*heldpool"\} 0/.test(metrics.text);
  });
  const third = await get("third");
  assert.equal(third.status, 429, `a third session in a pool of 2: ${third.status} ${third.text}`);

  // And the surplus sandbox does not stay warm beyond maxConcurrentSessions.
  await until("the engine holds no more than maxConcurrentSessions sandboxes", () => driver.live.length <= 2);
});
