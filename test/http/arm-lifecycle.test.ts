// ARM long-running-operation conformance, as a table of request/response sequences in the spirit of core-lro's
// lro.spec.ts: what PUT, PATCH and DELETE answer, what the Azure-AsyncOperation and Location URLs say while the
// work runs and after, and what a GET shows. A gated runtime holds provisioning and deprovision open until a step
// lets them end. Then merge semantics, immutable fields, conditional requests, every api-version's shape,
// identity, systemData, the pool management endpoint and getAuthtoken.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { ARM_API_VERSIONS, SUPPORTED_ARM_API_VERSIONS } from "../../src/core/pools/api-versions.ts";
import { type GatedBackend, gatedBackend } from "../helpers/fake-backend.ts";
import {
  ADMIN_TOKEN,
  call,
  poolUrl,
  type Reply,
  SUB,
  startTestServer,
  type TestServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";

type Json = Record<string, unknown>;

const ENV_ID = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/managedEnvironments/env1`;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const ABSENT = Symbol("absent");

const python = (extra: Json = {}): Json => ({
  location: "eastus",
  tags: { team: "a" },
  properties: { containerType: "PythonLTS", ...extra },
});

const custom = (): Json => ({
  location: "eastus",
  properties: {
    containerType: "CustomContainer",
    environmentId: ENV_ID,
    scaleConfiguration: { maxConcurrentSessions: 5, readySessionInstances: 1 },
    customContainerTemplate: {
      containers: [{ image: "busybox:latest", name: "main", resources: { cpu: 0.5, memory: "1Gi" } }],
      ingress: { targetPort: 8080 },
    },
  },
});

/** Every key of `expected` holds in `actual` (recursively); ABSENT means the key must be missing. */
function assertSubset(actual: unknown, expected: unknown, path = "body"): void {
  if (typeof expected === "function") {
    assert.ok((expected as (v: unknown) => boolean)(actual), `${path}: ${JSON.stringify(actual)}`);
  } else if (expected !== null && typeof expected === "object" && !Array.isArray(expected)) {
    assert.ok(
      actual !== null && typeof actual === "object",
      `${path} should be an object: ${JSON.stringify(actual)}`,
    );
    for (const [k, v] of Object.entries(expected)) {
      const a = (actual as Json)[k];
      if (v === ABSENT)
        assert.ok(!(k in (actual as Json)), `${path}.${k} should be absent: ${JSON.stringify(a)}`);
      else assertSubset(a, v, `${path}.${k}`);
    }
  } else {
    assert.deepEqual(actual, expected, path);
  }
}

const props = (r: Reply) => (r.body as Json)["properties"] as Json;

// ---------------------------------------------------------------------------------------------------------------
// The LRO table

interface Ctx {
  s: TestServer;
  rt: GatedBackend;
  name: string;
  asyncUrl?: string;
  locationUrl?: string;
  firstAsyncUrl?: string;
  etag?: string;
}

type Target = "pool" | "async" | "location" | "firstAsync";

interface Expect {
  status: number;
  /** Azure-AsyncOperation and Location both present (true) or both absent (false). */
  lro?: boolean;
  body?: unknown;
  emptyBody?: boolean;
  /** The Azure-AsyncOperation header names the same operation as the previous write's. */
  sameOperation?: boolean;
}

type Step =
  | {
      req: "PUT" | "PATCH" | "DELETE" | "GET";
      to?: Target;
      body?: unknown;
      headers?: (c: Ctx) => Record<string, string>;
      expect: Expect;
    }
  | { finish: "provision" | "deprovision"; error?: string };

const succeeded = {
  status: "Succeeded",
  startTime: (v: unknown) => ISO.test(String(v)),
  endTime: (v: unknown) => ISO.test(String(v)),
};
const inProgress = { status: "InProgress", startTime: (v: unknown) => ISO.test(String(v)), endTime: ABSENT };
const state = (provisioningState: string) => ({ properties: { provisioningState } });

const scenarios: { name: string; setup?: Step[]; steps: Step[] }[] = [
  {
    name: "PUT create: 201 InProgress with both headers; the operation runs, then Succeeded; Location gives the pool",
    steps: [
      { req: "PUT", body: python(), expect: { status: 201, lro: true, body: state("InProgress") } },
      { req: "GET", to: "async", expect: { status: 200, body: inProgress } },
      { req: "GET", to: "location", expect: { status: 202, lro: true, emptyBody: true } },
      {
        req: "GET",
        expect: {
          status: 200,
          lro: false,
          body: { properties: { provisioningState: "InProgress", nodeCount: 0 } },
        },
      },
      { finish: "provision" },
      { req: "GET", to: "async", expect: { status: 200, body: succeeded } },
      {
        req: "GET",
        to: "location",
        expect: {
          status: 200,
          lro: false,
          body: { type: "Microsoft.App/sessionPools", ...state("Succeeded") },
        },
      },
      {
        req: "GET",
        expect: { status: 200, body: { properties: { provisioningState: "Succeeded", nodeCount: 1 } } },
      },
    ],
  },
  {
    name: "PUT create that fails: the operation is Failed with the reason, and so is the pool",
    steps: [
      { req: "PUT", body: python(), expect: { status: 201, lro: true, body: state("InProgress") } },
      { finish: "provision", error: "image registry.example.test/x:1 could not be pulled" },
      {
        req: "GET",
        to: "async",
        expect: {
          status: 200,
          body: {
            status: "Failed",
            endTime: (v: unknown) => ISO.test(String(v)),
            error: {
              code: "ProvisioningFailed",
              message: (m: unknown) => String(m).includes("could not be pulled"),
            },
          },
        },
      },
      {
        req: "GET",
        to: "location",
        expect: { status: 400, body: { error: { code: "ProvisioningFailed" } } },
      },
      { req: "GET", expect: { status: 200, body: state("Failed") } },
      // A re-PUT retries provisioning.
      { req: "PUT", body: python(), expect: { status: 200, lro: true, body: state("InProgress") } },
      { finish: "provision" },
      { req: "GET", to: "async", expect: { status: 200, body: succeeded } },
      { req: "GET", expect: { status: 200, body: state("Succeeded") } },
    ],
  },
  {
    name: "re-PUT: 200 with both headers; a PUT during provisioning supersedes it and both operations end",
    steps: [
      { req: "PUT", body: python(), expect: { status: 201, lro: true } },
      {
        req: "PUT",
        body: python({ scaleConfiguration: { maxConcurrentSessions: 7 } }),
        expect: { status: 200, lro: true, body: state("InProgress") },
      },
      { req: "GET", to: "firstAsync", expect: { status: 200, body: inProgress } },
      { finish: "provision" },
      { req: "GET", to: "async", expect: { status: 200, body: succeeded } },
      { req: "GET", to: "firstAsync", expect: { status: 200, body: succeeded } },
      {
        req: "GET",
        expect: {
          status: 200,
          body: {
            properties: { provisioningState: "Succeeded", scaleConfiguration: { maxConcurrentSessions: 7 } },
          },
        },
      },
    ],
  },
  {
    name: "PATCH: 202 with both headers and the merged pool; the operation ends Succeeded; Location gives the pool",
    setup: [{ req: "PUT", body: python(), expect: { status: 201 } }, { finish: "provision" }],
    steps: [
      {
        req: "PATCH",
        body: { properties: { scaleConfiguration: { maxConcurrentSessions: 8 } } },
        expect: {
          status: 202,
          lro: true,
          body: {
            tags: { team: "a" },
            properties: {
              provisioningState: "InProgress",
              scaleConfiguration: { maxConcurrentSessions: 8, readySessionInstances: 5 },
            },
          },
        },
      },
      { req: "GET", to: "async", expect: { status: 200, body: inProgress } },
      { req: "GET", to: "location", expect: { status: 202, lro: true } },
      { finish: "provision" },
      { req: "GET", to: "async", expect: { status: 200, body: succeeded } },
      {
        req: "GET",
        to: "location",
        expect: {
          status: 200,
          body: {
            properties: { provisioningState: "Succeeded", scaleConfiguration: { maxConcurrentSessions: 8 } },
          },
        },
      },
    ],
  },
  {
    name: "DELETE: 202 with both headers; Deleting until torn down; then GET 404 and Location 204",
    setup: [{ req: "PUT", body: python(), expect: { status: 201 } }, { finish: "provision" }],
    steps: [
      { req: "DELETE", expect: { status: 202, lro: true, emptyBody: true } },
      { req: "GET", to: "async", expect: { status: 200, body: inProgress } },
      { req: "GET", to: "location", expect: { status: 202, lro: true } },
      { req: "GET", expect: { status: 200, body: state("Deleting") } },
      // A second DELETE while the first runs answers with the same operation.
      { req: "DELETE", expect: { status: 202, lro: true, sameOperation: true } },
      { req: "GET", to: "firstAsync", expect: { status: 200, body: inProgress } },
      // Writes wait for the deletion to finish.
      { req: "PUT", body: python(), expect: { status: 409, body: { error: { code: "PoolBeingDeleted" } } } },
      {
        req: "PATCH",
        body: { tags: {} },
        expect: { status: 409, body: { error: { code: "PoolBeingDeleted" } } },
      },
      { finish: "deprovision" },
      { req: "GET", to: "async", expect: { status: 200, body: succeeded } },
      { req: "GET", to: "location", expect: { status: 204, lro: false, emptyBody: true } },
      { req: "GET", expect: { status: 404, body: { error: { code: "ResourceNotFound" } } } },
      { req: "DELETE", expect: { status: 204, lro: false, emptyBody: true } },
    ],
  },
  {
    name: "DELETE while provisioning: the create is Canceled, the delete Succeeds",
    steps: [
      { req: "PUT", body: python(), expect: { status: 201, lro: true } },
      { req: "DELETE", expect: { status: 202, lro: true } },
      {
        req: "GET",
        to: "firstAsync",
        expect: { status: 200, body: { status: "Canceled", endTime: (v: unknown) => ISO.test(String(v)) } },
      },
      { finish: "deprovision" },
      { req: "GET", to: "async", expect: { status: 200, body: succeeded } },
      { req: "GET", expect: { status: 404 } },
    ],
  },
  {
    name: "DELETE whose deprovision fails: the operation is Failed, the pool stays Deleting, a new DELETE retries",
    setup: [{ req: "PUT", body: python(), expect: { status: 201 } }, { finish: "provision" }],
    steps: [
      { req: "DELETE", expect: { status: 202, lro: true } },
      { finish: "deprovision", error: "the engine is unreachable" },
      {
        req: "GET",
        to: "async",
        expect: { status: 200, body: { status: "Failed", error: { code: "DeleteFailed" } } },
      },
      { req: "GET", expect: { status: 200, body: state("Deleting") } },
      { req: "DELETE", expect: { status: 202, lro: true } },
      { finish: "deprovision" },
      { req: "GET", to: "async", expect: { status: 200, body: succeeded } },
      { req: "GET", expect: { status: 404 } },
    ],
  },
  {
    name: "DELETE of an absent pool: 204 without LRO headers",
    steps: [{ req: "DELETE", expect: { status: 204, lro: false, emptyBody: true } }],
  },
  {
    name: "PATCH and getAuthtoken of an absent pool: 404",
    steps: [
      {
        req: "PATCH",
        body: { tags: {} },
        expect: { status: 404, body: { error: { code: "ResourceNotFound" } } },
      },
      { req: "GET", expect: { status: 404, body: { error: { code: "ResourceNotFound" } } } },
    ],
  },
  {
    name: "If-Match: a stale etag gets 412 on PUT, PATCH and DELETE; the current one goes through",
    setup: [{ req: "PUT", body: python(), expect: { status: 201 } }, { finish: "provision" }],
    steps: [
      { req: "GET", expect: { status: 200 } },
      {
        req: "PUT",
        body: python(),
        headers: () => ({ "if-match": '"stale"' }),
        expect: { status: 412, body: { error: { code: "PreconditionFailed" } } },
      },
      {
        req: "PATCH",
        body: { tags: {} },
        headers: () => ({ "if-match": '"stale"' }),
        expect: { status: 412, body: { error: { code: "PreconditionFailed" } } },
      },
      {
        req: "DELETE",
        headers: () => ({ "if-match": '"stale"' }),
        expect: { status: 412, body: { error: { code: "PreconditionFailed" } } },
      },
      {
        req: "PATCH",
        body: { tags: { v: "2" } },
        headers: (c) => ({ "if-match": c.etag! }),
        expect: { status: 202, lro: true, body: { tags: { v: "2" } } },
      },
      { finish: "provision" },
      // The PATCH changed the etag: the one it replaced is stale now.
      {
        req: "PUT",
        body: python(),
        headers: () => ({ "if-match": "*" }),
        expect: { status: 200, lro: true },
      },
      { finish: "provision" },
      { req: "DELETE", headers: (c) => ({ "if-match": c.etag! }), expect: { status: 202, lro: true } },
      { finish: "deprovision" },
    ],
  },
  {
    name: "If-None-Match: * creates only when absent; If-Match on an absent pool gets 412",
    steps: [
      { req: "PUT", body: python(), headers: () => ({ "if-match": "*" }), expect: { status: 412 } },
      {
        req: "PUT",
        body: python(),
        headers: () => ({ "if-none-match": "*" }),
        expect: { status: 201, lro: true },
      },
      { finish: "provision" },
      {
        req: "PUT",
        body: python(),
        headers: () => ({ "if-none-match": "*" }),
        expect: { status: 412, body: { error: { code: "PreconditionFailed" } } },
      },
    ],
  },
];

describe("long-running operations, step by step", () => {
  let s: TestServer;
  let rt: GatedBackend;
  before(async () => {
    rt = gatedBackend();
    s = await startTestServer({ backend: rt.factory });
  });
  after(async () => {
    await s.close();
  });

  for (const [i, scenario] of scenarios.entries()) {
    it(scenario.name, async () => {
      const c: Ctx = { s, rt, name: `lro${i}` };
      for (const step of scenario.setup ?? []) await run(c, step);
      c.firstAsyncUrl = undefined;
      for (const step of scenario.steps) await run(c, step);
    });
  }

  async function run(c: Ctx, step: Step): Promise<void> {
    if ("finish" in step) {
      await c.rt.finish(step.finish, c.name, step.error === undefined ? undefined : new Error(step.error));
      // Let the service settle what the runtime reported before the next request looks.
      await new Promise((r) => setImmediate(r));
      return;
    }
    const url = {
      pool: poolUrl(c.s.url, c.name),
      async: c.asyncUrl,
      location: c.locationUrl,
      firstAsync: c.firstAsyncUrl,
    }[step.to ?? "pool"];
    assert.ok(url, `no ${step.to} URL yet`);
    const r = await call(step.req, url, {
      ...(step.body === undefined ? {} : { body: step.body }),
      ...(step.headers ? { headers: step.headers(c) } : {}),
    });
    const where = `${step.req} ${step.to ?? "pool"} -> ${r.status} ${r.text}`;
    assert.equal(r.status, step.expect.status, where);
    const asyncOp = r.headers["azure-asyncoperation"];
    const location = r.headers["location"];
    if (step.expect.lro === true) {
      assert.ok(asyncOp && location, `both LRO headers expected: ${where}`);
      assert.match(
        asyncOp,
        /\/providers\/Microsoft\.App\/locations\/eastus\/sessionPoolOperationStatuses\/[\w-]+\?api-version=/,
      );
      assert.match(
        location,
        /\/providers\/Microsoft\.App\/locations\/eastus\/sessionPoolOperationResults\/[\w-]+\?api-version=/,
      );
    }
    if (step.expect.lro === false) assert.ok(!asyncOp && !location, `no LRO headers expected: ${where}`);
    if (step.expect.emptyBody) assert.equal(r.text, "", where);
    if (step.expect.sameOperation) assert.equal(asyncOp, c.asyncUrl, where);
    if (step.expect.body !== undefined) assertSubset(r.body, step.expect.body);
    if (step.to === undefined && asyncOp && location && ["PUT", "PATCH", "DELETE"].includes(step.req)) {
      c.firstAsyncUrl ??= asyncOp;
      c.asyncUrl = asyncOp;
      c.locationUrl = location;
    }
    if (step.to === undefined && r.headers["etag"]) c.etag = r.headers["etag"];
    if (step.to === "async" || step.to === "firstAsync") {
      // The ARM operation resource: {id, name, status, startTime, endTime?, error?}.
      const op = r.body as Json;
      assert.equal(op["name"], new URL(url).pathname.split("/").at(-1));
      assert.ok(String(op["id"]).endsWith(`/sessionPoolOperationStatuses/${op["name"]}`), where);
      assert.ok(
        String(op["id"]).startsWith(`/subscriptions/${SUB}/providers/Microsoft.App/locations/`),
        where,
      );
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------

describe("PATCH merges; PUT replaces; some fields never change", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.close();
  });

  async function create(name: string, body: Json): Promise<Reply> {
    const r = await call("PUT", poolUrl(s.url, name), { body });
    assert.equal(r.status, 201, r.text);
    await waitForOperation(r.headers["azure-asyncoperation"]!);
    return call("GET", poolUrl(s.url, name));
  }

  it("applies the az CLI's defaults to what a PUT leaves out", async () => {
    const got = await create("defaults", { location: "eastus" });
    assertSubset(got.body, {
      tags: {},
      identity: ABSENT,
      properties: {
        containerType: "PythonLTS",
        poolManagementType: "Dynamic",
        scaleConfiguration: { maxConcurrentSessions: 10, readySessionInstances: 5 },
        secrets: [],
        dynamicPoolConfiguration: {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
        },
        sessionNetworkConfiguration: { status: "EgressDisabled" },
        customContainerTemplate: ABSENT,
        provisioningState: "Succeeded",
      },
    });
    const onExit = await create("defaults2", {
      ...custom(),
      properties: {
        ...(custom()["properties"] as Json),
        dynamicPoolConfiguration: { lifecycleConfiguration: { lifecycleType: "OnContainerExit" } },
      },
    });
    assert.deepEqual(props(onExit)["dynamicPoolConfiguration"], {
      lifecycleConfiguration: { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: 3600 },
    });
  });

  it("keeps the fields a PATCH does not send", async () => {
    const before = await create("merge1", {
      ...python({
        scaleConfiguration: { maxConcurrentSessions: 12, readySessionInstances: 3 },
        sessionNetworkConfiguration: { status: "EgressEnabled" },
        dynamicPoolConfiguration: {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 900 },
        },
        secrets: [{ name: "api-key", value: "v" }],
      }),
      identity: { type: "SystemAssigned" },
    });
    const r = await call("PATCH", poolUrl(s.url, "merge1"), {
      body: { properties: { scaleConfiguration: { readySessionInstances: 4 } } },
    });
    assert.equal(r.status, 202, r.text);
    await waitForOperation(r.headers["azure-asyncoperation"]!);
    const afterwards = await call("GET", poolUrl(s.url, "merge1"));
    const expected = structuredClone(before.body) as { properties: { scaleConfiguration: Json } };
    expected.properties.scaleConfiguration["readySessionInstances"] = 4;
    const strip = (b: unknown) => {
      const copy = structuredClone(b) as Json;
      delete copy["systemData"];
      return copy;
    };
    assert.deepEqual(strip(afterwards.body), strip(expected));
  });

  it("replaces tags as a whole object; a null value drops a tag; null tags clear them", async () => {
    await create("merge2", { ...python(), tags: { a: "1", b: "2" } });
    const patch = async (body: unknown) => {
      const r = await call("PATCH", poolUrl(s.url, "merge2"), { body });
      assert.equal(r.status, 202, r.text);
      return (r.body as Json)["tags"];
    };
    assert.deepEqual(await patch({ tags: { b: "3", c: "4" } }), { b: "3", c: "4" });
    assert.deepEqual(await patch({ tags: { b: "3", c: null } }), { b: "3" });
    assert.deepEqual(await patch({ properties: {} }), { b: "3" }, "tags not sent are kept");
    assert.deepEqual(await patch({ tags: null }), {});
    assert.deepEqual(((await call("GET", poolUrl(s.url, "merge2"))).body as Json)["tags"], {});
  });

  it("a null in a nested object removes that field, which then takes its default", async () => {
    await create(
      "merge3",
      python({ scaleConfiguration: { maxConcurrentSessions: 8, readySessionInstances: 2 } }),
    );
    const r = await call("PATCH", poolUrl(s.url, "merge3"), {
      body: { properties: { scaleConfiguration: { readySessionInstances: null } } },
    });
    assert.equal(r.status, 202, r.text);
    assert.deepEqual(props(r)["scaleConfiguration"], { maxConcurrentSessions: 8, readySessionInstances: 5 });
  });

  it("PATCH of the custom container template replaces the containers array", async () => {
    await create("merge4", custom());
    const r = await call("PATCH", poolUrl(s.url, "merge4"), {
      body: {
        properties: { customContainerTemplate: { containers: [{ image: "busybox:1.37", name: "main" }] } },
      },
    });
    assert.equal(r.status, 202, r.text);
    assert.deepEqual(props(r)["customContainerTemplate"], {
      containers: [{ image: "busybox:1.37", name: "main" }],
      ingress: { targetPort: 8080 },
    });
  });

  const notUpdatable: [string, Json][] = [
    ["location", { location: "westeurope" }],
    ["properties.containerType", { properties: { containerType: "CustomContainer" } }],
    ["properties.environmentId", { properties: { environmentId: ENV_ID } }],
    ["properties.poolManagementType", { properties: { poolManagementType: "Dynamic" } }],
    ["properties.managedIdentitySettings", { properties: { managedIdentitySettings: [] } }],
    ["properties.mcpServerSettings", { properties: { mcpServerSettings: { isMcpServerEnabled: true } } }],
  ];
  for (const [field, body] of notUpdatable) {
    it(`PATCH of ${field} gets 400 naming it`, async () => {
      const name = `nu${field.replace(/\W/g, "").toLowerCase()}`;
      const before = await create(name, python());
      const r = await call("PATCH", poolUrl(s.url, name), { body });
      assert.equal(r.status, 400, r.text);
      const e = (r.body as { error: Json }).error;
      assert.equal(e["code"], "PropertyNotUpdatable");
      assert.equal(e["target"], field);
      assert.ok(String(e["message"]).includes(field), String(e["message"]));
      assert.equal((await call("GET", poolUrl(s.url, name))).headers["etag"], before.headers["etag"]);
    });
  }

  it("PUT changing containerType, location or environmentId gets 400 naming the field", async () => {
    await create("immut", custom());
    const changes: [string, Json][] = [
      ["properties.containerType", { ...custom(), properties: { containerType: "PythonLTS" } }],
      ["location", { ...custom(), location: "westeurope" }],
      [
        "properties.environmentId",
        { ...custom(), properties: { ...(custom()["properties"] as Json), environmentId: `${ENV_ID}2` } },
      ],
    ];
    for (const [field, body] of changes) {
      const r = await call("PUT", poolUrl(s.url, "immut"), { body });
      assert.equal(r.status, 400, r.text);
      const e = (r.body as { error: Json }).error;
      assert.equal(e["code"], "PropertyChangeNotAllowed");
      assert.equal(e["target"], field);
      assert.ok(String(e["message"]).includes(field), String(e["message"]));
    }
    // "East US" and "eastus" are the same location.
    const same = await call("PUT", poolUrl(s.url, "immut"), { body: { ...custom(), location: "East US" } });
    assert.equal(same.status, 200, same.text);
  });

  it("a PUT without secrets removes them; one naming a kept secret without a value keeps it", async () => {
    await create(
      "secrets1",
      python({
        secrets: [
          { name: "a", value: "1" },
          { name: "b", value: "2" },
        ],
      }),
    );
    const keep = await call("PUT", poolUrl(s.url, "secrets1"), {
      body: python({ secrets: [{ name: "b" }] }),
    });
    assert.equal(keep.status, 200, keep.text);
    assert.deepEqual(props(keep)["secrets"], [{ name: "b" }]);
    const none = await call("PUT", poolUrl(s.url, "secrets1"), { body: python() });
    assert.equal(none.status, 200, none.text);
    assert.deepEqual(props(none)["secrets"], []);
    // The secret is gone for real: naming it again without a value is a new secret without a value.
    const again = await call("PUT", poolUrl(s.url, "secrets1"), {
      body: python({ secrets: [{ name: "b" }] }),
    });
    assert.equal(again.status, 400, again.text);
    assert.equal((again.body as { error: Json }).error["code"], "SecretValueRequired");
  });

  it("concurrent PATCHes with the same If-Match: exactly one wins, the rest get 412", async () => {
    const before = await create("race", python());
    const etag = before.headers["etag"]!;
    const replies = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        call("PATCH", poolUrl(s.url, "race"), {
          body: { tags: { writer: String(i) } },
          headers: { "if-match": etag },
        }),
      ),
    );
    const statuses = replies.map((r) => r.status).sort();
    assert.deepEqual(statuses, [202, 412, 412, 412, 412, 412, 412, 412]);
    const winner = replies.find((r) => r.status === 202)!;
    const now = await call("GET", poolUrl(s.url, "race"));
    assert.deepEqual((now.body as Json)["tags"], (winner.body as Json)["tags"]);
  });

  it("lists page with nextLink until the last page, which has none", async () => {
    const paged = await startTestServer({ listPageSize: 2 });
    try {
      for (const name of ["pa", "pb", "pc", "pd", "pe"].map((n) => `${n}pool`)) {
        assert.equal((await call("PUT", poolUrl(paged.url, name), { body: python() })).status, 201);
      }
      const names: string[] = [];
      let url: string | undefined =
        `${paged.url}/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/sessionPools?api-version=2025-07-01`;
      let pages = 0;
      while (url) {
        const r = await call("GET", url);
        assert.equal(r.status, 200, r.text);
        const page = r.body as { value: Json[]; nextLink?: string };
        assert.ok(page.value.length <= 2);
        names.push(...page.value.map((p) => String(p["name"])));
        url = page.nextLink;
        if (url) assert.ok(url.startsWith(`${paged.url}/subscriptions/${SUB}/resourceGroups/rg1/`), url);
        pages++;
      }
      assert.equal(pages, 3);
      assert.deepEqual(names, ["papool", "pbpool", "pcpool", "pdpool", "pepool"]);
    } finally {
      await paged.close();
    }
  });

  it("keeps subscriptions apart, and matches resource group and pool names without regard to case", async () => {
    const otherSub = "11111111-2222-3333-4444-555555555555";
    const elsewhere = poolUrl(s.url, "elsewhere").replace(SUB, otherSub);
    const put = await call("PUT", elsewhere, { body: python() });
    assert.equal(put.status, 201, put.text);
    const list = await call(
      "GET",
      `${s.url}/subscriptions/${SUB}/providers/Microsoft.App/sessionPools?api-version=2025-07-01`,
    );
    assert.ok(!(list.body as { value: Json[] }).value.some((p) => p["name"] === "elsewhere"));
    const theirs = await call(
      "GET",
      `${s.url}/subscriptions/${otherSub}/providers/Microsoft.App/sessionPools?api-version=2025-07-01`,
    );
    assert.deepEqual(
      (theirs.body as { value: Json[] }).value.map((p) => p["name"]),
      ["elsewhere"],
    );
    // The operation belongs to its subscription too.
    const foreignOp = put.headers["azure-asyncoperation"]!.replace(otherSub, SUB);
    const notFound = await call("GET", foreignOp);
    assert.equal(notFound.status, 404, notFound.text);
    assert.equal((notFound.body as { error: Json }).error["code"], "OperationNotFound");
    const unknown = await call(
      "GET",
      put.headers["azure-asyncoperation"]!.replace(/Statuses\/[\w-]+/, "Statuses/nope"),
    );
    assert.equal(unknown.status, 404, unknown.text);

    await create("casey", python());
    const upper = await call(
      "GET",
      poolUrl(s.url, "casey", "2025-07-01", "RG1").replace(
        "/providers/Microsoft.App/",
        "/PROVIDERS/microsoft.app/",
      ),
    );
    assert.equal(upper.status, 200, upper.text);
    assert.equal(
      (upper.body as Json)["id"],
      `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/sessionPools/casey`,
    );
    const reput = await call("PUT", poolUrl(s.url, "casey", "2025-07-01", "RG1"), { body: python() });
    assert.equal(reput.status, 200, reput.text);
  });

  it("sends Retry-After on 201, 202 and while an operation runs, when the server is configured to", async () => {
    const rt = gatedBackend();
    const slow = await startTestServer({ retryAfterSeconds: 2, backend: rt.factory });
    try {
      const put = await call("PUT", poolUrl(slow.url, "retry"), { body: python() });
      assert.equal(put.status, 201);
      assert.equal(put.headers["retry-after"], "2");
      const status = await call("GET", put.headers["azure-asyncoperation"]!);
      assert.equal(status.headers["retry-after"], "2");
      const result = await call("GET", put.headers["location"]!);
      assert.equal(result.status, 202);
      assert.equal(result.headers["retry-after"], "2");
      await rt.finish("provision", "retry");
      const done = await waitForOperation(put.headers["azure-asyncoperation"]!);
      assert.equal(done["status"], "Succeeded");
      assert.equal(
        (await call("GET", put.headers["azure-asyncoperation"]!)).headers["retry-after"],
        undefined,
      );
    } finally {
      await slow.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("api-versions", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.close();
  });

  for (const version of SUPPORTED_ARM_API_VERSIONS) {
    it(`${version}: create, poll and get round-trip`, async () => {
      const name = `v${version.replace(/\W/g, "")}`;
      const put = await call("PUT", poolUrl(s.url, name, version), { body: python() });
      assert.equal(put.status, 201, put.text);
      assert.ok(put.headers["azure-asyncoperation"]!.includes(`api-version=${version}`));
      const op = await waitForOperation(put.headers["azure-asyncoperation"]!);
      assert.equal(op["status"], "Succeeded");
      const got = await call("GET", poolUrl(s.url, name, version));
      assert.equal(got.status, 200, got.text);
      assertSubset(got.body, {
        name,
        type: "Microsoft.App/sessionPools",
        location: "eastus",
        tags: { team: "a" },
        properties: { containerType: "PythonLTS", provisioningState: "Succeeded" },
      });
      const dyn = props(got)["dynamicPoolConfiguration"];
      if (ARM_API_VERSIONS[version]!.legacyDynamicPool) {
        assert.deepEqual(dyn, { executionType: "Timed", cooldownPeriodInSeconds: 300 });
      } else {
        assert.deepEqual(dyn, {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
        });
      }
    });
  }

  const legacyBody = {
    location: "eastus",
    properties: {
      containerType: "CustomContainer",
      environmentId: ENV_ID,
      secrets: [{ name: "registry-password", value: "pw" }],
      dynamicPoolConfiguration: { executionType: "Timed", cooldownPeriodInSeconds: 600 },
      customContainerTemplate: {
        registryCredentials: {
          registryServer: "registry.example.test",
          username: "puller",
          passwordSecretRef: "registry-password",
        },
        containers: [{ image: "registry.example.test/app:1", name: "app" }],
        ingress: { targetPort: 80 },
      },
    },
  };

  it("2024-02-02-preview speaks and accepts the legacy shape; 2025-07-01 reads it in the new one", async () => {
    const put = await call("PUT", poolUrl(s.url, "legacy", "2024-02-02-preview"), { body: legacyBody });
    assert.equal(put.status, 201, put.text);
    await waitForOperation(put.headers["azure-asyncoperation"]!);
    const old = await call("GET", poolUrl(s.url, "legacy", "2024-02-02-preview"));
    assert.deepEqual(props(old)["dynamicPoolConfiguration"], {
      executionType: "Timed",
      cooldownPeriodInSeconds: 600,
    });
    assert.deepEqual((props(old)["customContainerTemplate"] as Json)["registryCredentials"], {
      registryServer: "registry.example.test",
      username: "puller",
      passwordSecretRef: "registry-password",
    });
    assert.equal((old.body as Json)["identity"], undefined);
    const now = await call("GET", poolUrl(s.url, "legacy", "2025-07-01"));
    assert.deepEqual(props(now)["dynamicPoolConfiguration"], {
      lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 600 },
    });
    assert.deepEqual((props(now)["customContainerTemplate"] as Json)["registryCredentials"], {
      server: "registry.example.test",
      username: "puller",
      passwordSecretRef: "registry-password",
    });
    // The legacy GET body PUT back (secrets by name only) changes nothing.
    const again = await call("PUT", poolUrl(s.url, "legacy", "2024-02-02-preview"), { body: old.body });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(props(again)["dynamicPoolConfiguration"], props(old)["dynamicPoolConfiguration"]);
  });

  it("a pool created in the new shape reads back legacy under 2024-08-02-preview", async () => {
    const put = await call("PUT", poolUrl(s.url, "newshape", "2025-07-01"), {
      body: python({
        dynamicPoolConfiguration: {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 1200 },
        },
      }),
    });
    assert.equal(put.status, 201, put.text);
    const old = await call("GET", poolUrl(s.url, "newshape", "2024-08-02-preview"));
    assert.deepEqual(props(old)["dynamicPoolConfiguration"], {
      executionType: "Timed",
      cooldownPeriodInSeconds: 1200,
    });
  });

  const probes = [
    { type: "Liveness", httpGet: { path: "/health", port: 8080, scheme: "HTTP" }, periodSeconds: 10 },
    { type: "Startup", tcpSocket: { port: 8080 }, failureThreshold: 5 },
  ];

  it("2025-10-02-preview accepts and returns probes, mcpServerSettings, NodeLTS and Shell; 2025-07-01 hides them", async () => {
    const body = custom();
    ((body["properties"] as Json)["customContainerTemplate"] as { containers: Json[] }).containers[0]![
      "probes"
    ] = probes;
    const put = await call("PUT", poolUrl(s.url, "probed", "2025-10-02-preview"), { body });
    assert.equal(put.status, 201, put.text);
    const preview = await call("GET", poolUrl(s.url, "probed", "2025-10-02-preview"));
    assert.deepEqual(
      ((props(preview)["customContainerTemplate"] as Json)["containers"] as Json[])[0]!["probes"],
      probes,
    );
    const stable = await call("GET", poolUrl(s.url, "probed", "2025-07-01"));
    assert.equal(
      ((props(stable)["customContainerTemplate"] as Json)["containers"] as Json[])[0]!["probes"],
      undefined,
    );

    for (const containerType of ["NodeLTS", "Shell"]) {
      const name = `mcp${containerType.toLowerCase()}`;
      // No MCP server is served yet: the settings are kept and returned, without an endpoint that would 404
      // (enabling it is refused; test/http/served-urls.test.ts).
      const r = await call("PUT", poolUrl(s.url, name, "2025-10-02-preview"), {
        body: {
          location: "eastus",
          properties: { containerType, mcpServerSettings: { isMcpServerEnabled: false } },
        },
      });
      assert.equal(r.status, 201, r.text);
      const got = await call("GET", poolUrl(s.url, name, "2025-10-02-preview"));
      assert.equal(props(got)["containerType"], containerType);
      assert.deepEqual(props(got)["mcpServerSettings"], {
        isMcpServerEnabled: false,
        isMcpServerApiKeyDisabled: false,
      });
      assert.equal(
        props(await call("GET", poolUrl(s.url, name, "2025-07-01")))["mcpServerSettings"],
        undefined,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe("identity, systemData, endpoints and tokens", () => {
  it("a SystemAssigned identity keeps its principalId and tenantId across PATCH, PUT and restart", async () => {
    const dataDir = tempDir();
    let s = await startTestServer({ dataDir });
    try {
      const put = await call("PUT", poolUrl(s.url, "ident"), {
        body: { ...python(), identity: { type: "SystemAssigned" } },
      });
      assert.equal(put.status, 201, put.text);
      const identity = (put.body as Json)["identity"] as Json;
      assert.equal(identity["type"], "SystemAssigned");
      assert.match(
        String(identity["principalId"]),
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
      );
      assert.match(
        String(identity["tenantId"]),
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
      );
      const patched = await call("PATCH", poolUrl(s.url, "ident"), { body: { tags: { x: "y" } } });
      assert.deepEqual((patched.body as Json)["identity"], identity);
      const reput = await call("PUT", poolUrl(s.url, "ident"), {
        body: { ...python(), identity: { type: "SystemAssigned" } },
      });
      assert.deepEqual((reput.body as Json)["identity"], identity);
      await s.close();
      s = await startTestServer({ dataDir });
      const got = await call("GET", poolUrl(s.url, "ident"));
      assert.deepEqual((got.body as Json)["identity"], identity);
      // Another pool gets another principal.
      const other = await call("PUT", poolUrl(s.url, "ident2"), {
        body: { ...python(), identity: { type: "SystemAssigned" } },
      });
      assert.notEqual(((other.body as Json)["identity"] as Json)["principalId"], identity["principalId"]);
    } finally {
      await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("user-assigned identities get a principalId and clientId each", async () => {
    const s = await startTestServer();
    try {
      const uami = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller`;
      const r = await call("PUT", poolUrl(s.url, "uami"), {
        body: {
          ...python(),
          identity: { type: "UserAssigned", userAssignedIdentities: { [uami]: {} } },
          properties: { managedIdentitySettings: [{ identity: uami, lifecycle: "Main" }] },
        },
      });
      assert.equal(r.status, 201, r.text);
      const entry = (((r.body as Json)["identity"] as Json)["userAssignedIdentities"] as Json)[uami] as Json;
      assert.match(String(entry["principalId"]), /^[0-9a-f-]{36}$/);
      assert.match(String(entry["clientId"]), /^[0-9a-f-]{36}$/);
      assert.deepEqual(props(r)["managedIdentitySettings"], [{ identity: uami, lifecycle: "Main" }]);
    } finally {
      await s.close();
    }
  });

  it("systemData says who created and who last modified, and when", async () => {
    let clock = new Date("2026-03-01T10:00:00.000Z");
    const s = await startTestServer({ now: () => clock });
    try {
      const put = await call("PUT", poolUrl(s.url, "sysdata"), { body: python() });
      assert.deepEqual((put.body as Json)["systemData"], {
        createdBy: "admin",
        createdByType: "Application",
        createdAt: "2026-03-01T10:00:00.000Z",
        lastModifiedBy: "admin",
        lastModifiedByType: "Application",
        lastModifiedAt: "2026-03-01T10:00:00.000Z",
      });
      clock = new Date("2026-03-02T11:00:00.000Z");
      await call("PATCH", poolUrl(s.url, "sysdata"), { body: { tags: {} } });
      const got = await call("GET", poolUrl(s.url, "sysdata"));
      assertSubset((got.body as Json)["systemData"], {
        createdAt: "2026-03-01T10:00:00.000Z",
        lastModifiedAt: "2026-03-02T11:00:00.000Z",
      });
    } finally {
      await s.close();
    }
  });

  it("poolManagementEndpoint is {publicUrl}/subscriptions/{sub}/resourceGroups/{rg}/sessionPools/{name}", async () => {
    const s = await startTestServer({ publicUrl: "https://sessions.example.test" });
    try {
      const put = await call("PUT", poolUrl(s.url, "endpoint", "2025-07-01", "MyGroup"), { body: python() });
      const expected = `https://sessions.example.test/subscriptions/${SUB}/resourceGroups/MyGroup/sessionPools/endpoint`;
      assert.equal(props(put)["poolManagementEndpoint"], expected);
      await call("PATCH", poolUrl(s.url, "endpoint", "2025-07-01", "MyGroup"), {
        body: { tags: { a: "b" } },
      });
      const got = await call("GET", poolUrl(s.url, "endpoint", "2025-07-01", "MyGroup"));
      assert.equal(props(got)["poolManagementEndpoint"], expected);
      assert.equal(
        (got.body as Json)["id"],
        `/subscriptions/${SUB}/resourceGroups/MyGroup/providers/Microsoft.App/sessionPools/endpoint`,
      );
    } finally {
      await s.close();
    }
  });

  it("getAuthtoken returns a pool token that expires in an hour; 404 for an absent pool", async () => {
    const s = await startTestServer();
    try {
      await call("PUT", poolUrl(s.url, "tokens"), { body: { ...python(), location: "East US" } });
      const before = Date.now();
      const r = await call("POST", poolUrl(s.url, "tokens").replace("?", "/getAuthtoken?"));
      assert.equal(r.status, 200, r.text);
      const body = r.body as Json;
      assert.deepEqual(Object.keys(body).sort(), ["id", "location", "name", "properties", "type"]);
      assertSubset(body, {
        id: `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/sessionPools/tokens`,
        name: "tokens",
        type: "Microsoft.App/sessionPools/accesstoken",
        location: "East US",
      });
      const { token, expires } = body["properties"] as { token: string; expires: string };
      assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
      assert.match(expires, ISO);
      const ahead = Date.parse(expires) - before;
      assert.ok(ahead > 3540_000 && ahead <= 3600_000 + 1000, `expires ${ahead} ms ahead`);
      const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Json;
      assert.equal(claims["aud"], "https://dynamicsessions.io");

      const absent = await call("POST", poolUrl(s.url, "nosuchpool").replace("?", "/getAuthtoken?"));
      assert.equal(absent.status, 404, absent.text);
      assert.equal((absent.body as { error: Json }).error["code"], "ResourceNotFound");

      // The management API refuses a pool token: it is not the admin credential.
      for (const [method, url] of [
        ["GET", poolUrl(s.url, "tokens")],
        ["PUT", poolUrl(s.url, "tokens")],
        ["POST", poolUrl(s.url, "tokens").replace("?", "/getAuthtoken?")],
      ] as const) {
        const refused = await call(method, url, { token, ...(method === "PUT" ? { body: python() } : {}) });
        assert.equal(refused.status, 403, refused.text);
        assert.equal((refused.body as { error: Json }).error["code"], "AuthorizationFailed");
      }
      assert.equal((await call("GET", poolUrl(s.url, "tokens"), { token: ADMIN_TOKEN })).status, 200);
    } finally {
      await s.close();
    }
  });
});
