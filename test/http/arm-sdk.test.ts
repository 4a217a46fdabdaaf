// The contract test: the real, unmodified @azure/arm-appcontainers SDK (api-version 2026-07-01) against the server
// over HTTPS with a self-signed CA that only this client trusts. Create, get, list across pages, PATCH, the SDK's
// view of validation errors, delete and 404 after delete, as an Azure user would write it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { ContainerAppsAPIClient, type SessionPool } from "@azure/arm-appcontainers";
import type { AccessToken, TokenCredential } from "@azure/core-auth";
import { isRestError, type RestError } from "@azure/core-rest-pipeline";
import { Agent } from "undici";
import { ADMIN_TOKEN, call, poolUrl, SUB, startTestServer, type TestServer } from "../helpers/server.ts";

const ENV_ID = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/managedEnvironments/demokube`;

/** The admin credential, as a TokenCredential the SDK asks for tokens. */
const adminCredential: TokenCredential = {
  async getToken(): Promise<AccessToken> {
    return { token: ADMIN_TOKEN, expiresOnTimestamp: Date.now() + 3600_000 };
  },
};

let s: TestServer;
let ca: Buffer;
let client: ContainerAppsAPIClient;
const poll = { updateIntervalInMs: 10 };

before(async () => {
  s = await startTestServer({
    tls: "self-signed",
    listPageSize: 2,
    // Provisioning succeeds at once, except for pools named broken*, whose image "cannot be pulled".
    backend: async () => ({
      provisioner: {
        provision: async (pool) => {
          if (pool.name.startsWith("broken")) throw new Error(`image for ${pool.name} could not be pulled`);
        },
        deprovision: async () => {},
      },
      close: async () => {},
    }),
  });
  assert.ok(s.url.startsWith("https://"), s.url);
  ca = readFileSync(s.server.caPath!);
  // tlsOptions is core-rest-pipeline's client option for TLS settings: only this client trusts the test CA.
  client = new ContainerAppsAPIClient(adminCredential, SUB, {
    endpoint: s.url,
    tlsOptions: { ca: ca.toString() },
    retryOptions: { maxRetries: 0 },
  });
});

after(async () => {
  await s.close();
});

/** The SDK's deserializers spell absent fields as `undefined` keys; compare what the wire carried. */
const wire = (value: unknown): unknown =>
  value === undefined ? undefined : JSON.parse(JSON.stringify(value));

async function rejects(promise: Promise<unknown>): Promise<RestError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isRestError(err), `expected a RestError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the SDK to throw");
}

describe("@azure/arm-appcontainers against sessionpool over HTTPS", () => {
  it("refuses the server without the CA: the certificate is really checked", async () => {
    const untrusting = new ContainerAppsAPIClient(adminCredential, SUB, {
      endpoint: s.url,
      retryOptions: { maxRetries: 0 },
    });
    await assert.rejects(untrusting.containerAppsSessionPools.get("rg1", "anything"), (err: Error) => {
      assert.match(
        String((err as { code?: string }).code ?? err.message),
        /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/i,
      );
      return true;
    });
  });

  it("creates a PythonLTS pool and waits for it", async () => {
    const pool = await client.containerAppsSessionPools.createOrUpdate(
      "rg1",
      "pythonpool",
      {
        location: "eastus",
        tags: { purpose: "contract-test" },
        containerType: "PythonLTS",
        poolManagementType: "Dynamic",
        scaleConfiguration: { maxConcurrentSessions: 10, readySessionInstances: 2 },
        dynamicPoolConfiguration: {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
        },
        sessionNetworkConfiguration: { status: "EgressDisabled" },
      },
      poll,
    );
    assert.equal(pool.name, "pythonpool");
    assert.equal(pool.type, "Microsoft.App/sessionPools");
    assert.equal(
      pool.id,
      `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/sessionPools/pythonpool`,
    );
    assert.equal(pool.provisioningState, "Succeeded");
    assert.equal(pool.containerType, "PythonLTS");
    assert.deepEqual(wire(pool.scaleConfiguration), { maxConcurrentSessions: 10, readySessionInstances: 2 });
    assert.deepEqual(pool.tags, { purpose: "contract-test" });
    assert.equal(
      pool.poolManagementEndpoint,
      `${s.url}/subscriptions/${SUB}/resourceGroups/rg1/sessionPools/pythonpool`,
    );
    assert.equal(pool.systemData?.createdBy, "admin");
    assert.ok(pool.systemData?.createdAt instanceof Date);
  });

  it("creates a CustomContainer pool from the official example body", async () => {
    // SessionPools_LifecycleOnContainerExit_CreateOrUpdate.json (2025-07-01) as published; the only adaptation is
    // spelling out the ids the example abridges, in the test subscription. Our validation needs nothing else
    // changed: maxConcurrentSessions 500 is under the default cap of 600, readySessionInstances 100 under it,
    // maxAlivePeriodInSeconds 86400 is the upper bound, and the example's pool name fits ^[a-z][a-z0-9]*$.
    const example: SessionPool = {
      location: "East US",
      identity: { type: "SystemAssigned" },
      environmentId: ENV_ID,
      poolManagementType: "Dynamic",
      containerType: "CustomContainer",
      scaleConfiguration: { maxConcurrentSessions: 500, readySessionInstances: 100 },
      dynamicPoolConfiguration: {
        lifecycleConfiguration: { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: 86400 },
      },
      customContainerTemplate: {
        containers: [
          {
            image: "repo/testcontainer:v4",
            name: "testinitcontainer",
            resources: { cpu: 0.25, memory: "0.5Gi" },
            command: ["/bin/sh"],
            args: ["-c", "while true; do echo hello; sleep 10;done"],
          },
        ],
        ingress: { targetPort: 80 },
        registryCredentials: {
          server: "test.azurecr.io",
          identity: `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/testSP`,
        },
      },
      sessionNetworkConfiguration: { status: "EgressEnabled" },
      managedIdentitySettings: [{ identity: "system", lifecycle: "Main" }],
    };
    const poller = client.containerAppsSessionPools.createOrUpdate("rg1", "testsessionpool", example, poll);
    const pool = await poller.pollUntilDone();
    assert.equal(pool.provisioningState, "Succeeded");
    assert.equal(pool.location, "East US");
    assert.equal(pool.identity?.type, "SystemAssigned");
    assert.match(pool.identity?.principalId ?? "", /^[0-9a-f-]{36}$/);
    assert.match(pool.identity?.tenantId ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(pool.environmentId, ENV_ID);
    assert.equal(pool.containerType, "CustomContainer");
    assert.deepEqual(wire(pool.scaleConfiguration), {
      maxConcurrentSessions: 500,
      readySessionInstances: 100,
    });
    assert.deepEqual(wire(pool.dynamicPoolConfiguration), example.dynamicPoolConfiguration);
    assert.deepEqual(wire(pool.customContainerTemplate), example.customContainerTemplate);
    assert.deepEqual(wire(pool.sessionNetworkConfiguration), { status: "EgressEnabled" });
    assert.deepEqual(wire(pool.managedIdentitySettings), [{ identity: "system", lifecycle: "Main" }]);
    assert.equal(pool.nodeCount, 1);
  });

  it("gets a pool", async () => {
    const pool = await client.containerAppsSessionPools.get("rg1", "testsessionpool");
    assert.equal(pool.name, "testsessionpool");
    assert.equal(pool.customContainerTemplate?.containers?.[0]?.image, "repo/testcontainer:v4");
    assert.equal(pool.provisioningState, "Succeeded");
  });

  it("lists by resource group and by subscription across pages", async () => {
    for (const [rg, name] of [
      ["rg1", "alpha"],
      ["rg1", "bravo"],
      ["rg2", "charlie"],
      ["rg2", "delta"],
      ["rg2", "echo"],
    ] as const) {
      await client.containerAppsSessionPools.createOrUpdate(rg, name, { location: "eastus" }, poll);
    }
    const names = async (it: AsyncIterable<SessionPool>) => {
      const out: string[] = [];
      for await (const p of it) out.push(p.name!);
      return out.sort();
    };
    assert.deepEqual(await names(client.containerAppsSessionPools.listByResourceGroup("rg1")), [
      "alpha",
      "bravo",
      "pythonpool",
      "testsessionpool",
    ]);
    assert.deepEqual(await names(client.containerAppsSessionPools.listByResourceGroup("rg2")), [
      "charlie",
      "delta",
      "echo",
    ]);
    assert.deepEqual(await names(client.containerAppsSessionPools.listBySubscription()), [
      "alpha",
      "bravo",
      "charlie",
      "delta",
      "echo",
      "pythonpool",
      "testsessionpool",
    ]);
    // The SDK really followed nextLink: page by page, two at a time.
    const pages: number[] = [];
    for await (const page of client.containerAppsSessionPools.listBySubscription().byPage())
      pages.push(page.length);
    assert.deepEqual(pages, [2, 2, 2, 1]);
    assert.deepEqual(await names(client.containerAppsSessionPools.listByResourceGroup("emptygroup")), []);
  });

  it("updates scale and tags with PATCH and keeps the rest", async () => {
    const before = await client.containerAppsSessionPools.get("rg1", "testsessionpool");
    const pool = await client.containerAppsSessionPools.update(
      "rg1",
      "testsessionpool",
      {
        tags: { owner: "sdk" },
        scaleConfiguration: { maxConcurrentSessions: 300, readySessionInstances: 20 },
      },
      poll,
    );
    assert.deepEqual(pool.tags, { owner: "sdk" });
    assert.deepEqual(wire(pool.scaleConfiguration), {
      maxConcurrentSessions: 300,
      readySessionInstances: 20,
    });
    assert.equal(pool.provisioningState, "Succeeded");
    const after = await client.containerAppsSessionPools.get("rg1", "testsessionpool");
    assert.deepEqual(wire(after.scaleConfiguration), {
      maxConcurrentSessions: 300,
      readySessionInstances: 20,
    });
    for (const kept of [
      "location",
      "identity",
      "environmentId",
      "containerType",
      "dynamicPoolConfiguration",
      "customContainerTemplate",
      "sessionNetworkConfiguration",
      "managedIdentitySettings",
      "poolManagementEndpoint",
    ] as const) {
      assert.deepEqual(wire(after[kept]), wire(before[kept]), kept);
    }
  });

  it("throws a RestError with status 400 and the ARM code for a validation error", async () => {
    const err = await rejects(
      client.containerAppsSessionPools
        .createOrUpdate(
          "rg1",
          "badpool",
          {
            location: "eastus",
            scaleConfiguration: { maxConcurrentSessions: 10, readySessionInstances: 11 },
          },
          poll,
        )
        .pollUntilDone(),
    );
    assert.equal(err.statusCode, 400);
    assert.equal(err.code, "SessionPoolInvalidReadySessionInstances");
    assert.match(err.message, /readySessionInstances/);

    const patchErr = await rejects(
      client.containerAppsSessionPools
        .update("rg1", "testsessionpool", { scaleConfiguration: { maxConcurrentSessions: 601 } }, poll)
        .pollUntilDone(),
    );
    assert.equal(patchErr.statusCode, 400);
    assert.equal(patchErr.code, "ValueOutOfRange");
    assert.match(patchErr.message, /maxConcurrentSessions/);

    const nameErr = await rejects(
      client.containerAppsSessionPools
        .createOrUpdate("rg1", "Bad-Name", { location: "eastus" }, poll)
        .pollUntilDone(),
    );
    assert.equal(nameErr.statusCode, 400);
    assert.equal(nameErr.code, "InvalidResourceName");
  });

  it("rejects the poller with the provisioning error when a pool ends Failed", async () => {
    const poller = client.containerAppsSessionPools.createOrUpdate(
      "rg1",
      "brokenpool",
      { location: "eastus" },
      poll,
    );
    await assert.rejects(poller.pollUntilDone(), (err: Error & { code?: string }) => {
      assert.match(err.message, /could not be pulled/);
      return true;
    });
    const pool = await client.containerAppsSessionPools.get("rg1", "brokenpool");
    assert.equal(pool.provisioningState, "Failed");
    await client.containerAppsSessionPools.delete("rg1", "brokenpool", poll).pollUntilDone();
  });

  it("returns a pool-scoped token from getAuthtoken (plain HTTPS: the SDK has it only for containerApps)", async () => {
    const dispatcher = new Agent({ connect: { ca } });
    try {
      const r = await call(
        "POST",
        poolUrl(s.url, "pythonpool", "2026-07-01").replace("?", "/getAuthtoken?"),
        { dispatcher },
      );
      assert.equal(r.status, 200, r.text);
      const body = r.body as { type: string; name: string; properties: { token: string; expires: string } };
      assert.equal(body.type, "Microsoft.App/sessionPools/accesstoken");
      assert.equal(body.name, "pythonpool");
      assert.ok(Date.parse(body.properties.expires) > Date.now());
      assert.equal(body.properties.token.split(".").length, 3);
    } finally {
      await dispatcher.close();
    }
  });

  it("deletes pools, and get after delete throws a 404 RestError", async () => {
    await client.containerAppsSessionPools.delete("rg1", "testsessionpool", poll).pollUntilDone();
    const err = await rejects(client.containerAppsSessionPools.get("rg1", "testsessionpool"));
    assert.equal(err.statusCode, 404);
    assert.equal(err.code, "ResourceNotFound");
    // Deleting what is not there is not an error.
    await client.containerAppsSessionPools.delete("rg1", "testsessionpool", poll).pollUntilDone();
    const remaining: string[] = [];
    for await (const p of client.containerAppsSessionPools.listByResourceGroup("rg1"))
      remaining.push(p.name!);
    assert.ok(!remaining.includes("testsessionpool"));
  });
});
