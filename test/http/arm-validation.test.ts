// Every validation rule of the management API as a table: a bad request, the 400 (or other 4xx) it earns, the
// specific ARM error code, the property path in `target` and a message that names the property. Then the
// spellings the service accepts, and a fuzz that no body, path or header gets a 5xx.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { SUPPORTED_ARM_API_VERSIONS } from "../../src/core/pools/api-versions.ts";
import { call, poolUrl, type Reply, SUB, startTestServer, type TestServer } from "../helpers/server.ts";

type Json = Record<string, unknown>;

const ENV_ID = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/managedEnvironments/env1`;
const LC = "properties.dynamicPoolConfiguration.lifecycleConfiguration";
const C0 = "properties.customContainerTemplate.containers[0]";
const REMOVE = Symbol("remove");

const python = (): Json => ({ location: "eastus", properties: { containerType: "PythonLTS" } });

const custom = (): Json => ({
  location: "eastus",
  properties: {
    containerType: "CustomContainer",
    environmentId: ENV_ID,
    scaleConfiguration: { maxConcurrentSessions: 5, readySessionInstances: 1 },
    secrets: [{ name: "registry-password", value: "s3cr3t-value" }],
    customContainerTemplate: {
      containers: [{ image: "busybox:latest", name: "main", resources: { cpu: 0.5, memory: "1Gi" } }],
      ingress: { targetPort: 8080 },
    },
  },
});

/** A deep copy of `body` with each "a.b[0].c" path set to its value (or removed). */
function edit(body: Json, changes: Record<string, unknown>): Json {
  const copy = structuredClone(body);
  for (const [path, value] of Object.entries(changes)) {
    const keys = path.replace(/\[(\d+)\]/g, ".$1").split(".");
    let node = copy as Record<string, unknown>;
    for (const [i, key] of keys.slice(0, -1).entries()) {
      node[key] ??= /^\d+$/.test(keys[i + 1]!) ? [] : {};
      node = node[key] as Record<string, unknown>;
    }
    const last = keys.at(-1)!;
    if (value === REMOVE) delete node[last];
    else node[last] = value;
  }
  return copy;
}

const lastSegment = (target: string) =>
  target
    .replace(/\[\d+\]/g, "")
    .split(".")
    .at(-1)!;

/** The ARM error envelope, with the code, target and a message naming the property. */
function assertArmError(
  r: Reply,
  expected: { status: number; code: string; target?: string; mentions?: string[] },
): void {
  const where = `${r.status} ${r.text}`;
  assert.equal(r.status, expected.status, where);
  assert.match(r.headers["content-type"] ?? "", /^application\/json/, where);
  const body = r.body as { error?: Record<string, unknown> };
  assert.ok(body.error, `no ARM error envelope: ${where}`);
  const e = body.error;
  assert.equal(e["code"], expected.code, where);
  assert.equal(typeof e["message"], "string", where);
  assert.ok(Array.isArray(e["details"]), `details must be an array: ${where}`);
  if (expected.target !== undefined) assert.equal(e["target"], expected.target, where);
  const mentions = expected.mentions ?? (expected.target ? [lastSegment(expected.target)] : []);
  for (const word of mentions)
    assert.ok(String(e["message"]).includes(word), `message lacks '${word}': ${where}`);
}

interface BadBody {
  name: string;
  body: unknown;
  code: string;
  target?: string;
  mentions?: string[];
  pool?: string;
}

const badBodies: BadBody[] = [
  // location
  { name: "location missing", body: { properties: {} }, code: "LocationRequired", target: "location" },
  { name: "location empty", body: { location: " " }, code: "LocationRequired", target: "location" },
  { name: "location not a string", body: { location: 5 }, code: "InvalidPropertyValue", target: "location" },
  // enums: the message lists the allowed values
  {
    name: "containerType unknown",
    body: edit(python(), { "properties.containerType": "Java" }),
    code: "InvalidEnumValue",
    target: "properties.containerType",
    mentions: ["containerType", "PythonLTS", "CustomContainer", "NodeLTS", "Shell"],
  },
  {
    name: "lifecycleType unknown",
    body: edit(python(), { [`${LC}.lifecycleType`]: "Forever" }),
    code: "InvalidEnumValue",
    target: `${LC}.lifecycleType`,
    mentions: ["lifecycleType", "Timed", "OnContainerExit"],
  },
  {
    name: "legacy executionType unknown",
    body: edit(python(), { "properties.dynamicPoolConfiguration.executionType": "Forever" }),
    code: "InvalidEnumValue",
    target: "properties.dynamicPoolConfiguration.executionType",
    mentions: ["executionType", "Timed"],
  },
  {
    name: "network status unknown",
    body: edit(python(), { "properties.sessionNetworkConfiguration.status": "Open" }),
    code: "InvalidEnumValue",
    target: "properties.sessionNetworkConfiguration.status",
    mentions: ["status", "EgressEnabled", "EgressDisabled"],
  },
  {
    name: "identity type unknown",
    body: edit(python(), { "identity.type": "Bogus" }),
    code: "InvalidEnumValue",
    target: "identity.type",
    mentions: ["identity.type", "SystemAssigned", "UserAssigned", "None"],
  },
  {
    name: "poolManagementType unknown",
    body: edit(python(), { "properties.poolManagementType": "Auto" }),
    code: "InvalidEnumValue",
    target: "properties.poolManagementType",
    mentions: ["poolManagementType", "Dynamic"],
  },
  {
    name: "poolManagementType Manual",
    body: edit(python(), { "properties.poolManagementType": "Manual" }),
    code: "UnsupportedPoolManagementType",
    target: "properties.poolManagementType",
    mentions: ["poolManagementType", "Dynamic"],
  },
  {
    name: "probe type Readiness",
    body: edit(custom(), { [`${C0}.probes`]: [{ type: "Readiness", tcpSocket: { port: 8080 } }] }),
    code: "InvalidEnumValue",
    target: `${C0}.probes[0].type`,
    mentions: ["type", "Liveness", "Startup"],
  },
  {
    name: "probe scheme unknown",
    body: edit(custom(), {
      [`${C0}.probes`]: [{ type: "Liveness", httpGet: { port: 8080, scheme: "FTP" } }],
    }),
    code: "InvalidEnumValue",
    target: `${C0}.probes[0].httpGet.scheme`,
    mentions: ["scheme", "HTTP", "HTTPS"],
  },
  {
    name: "managedIdentitySettings lifecycle unknown",
    body: edit(python(), {
      "identity.type": "SystemAssigned",
      "properties.managedIdentitySettings": [{ identity: "system", lifecycle: "Sometimes" }],
    }),
    code: "InvalidEnumValue",
    target: "properties.managedIdentitySettings[0].lifecycle",
    mentions: ["lifecycle", "None", "Main"],
  },
  // cpu and memory
  {
    name: "cpu below 0.25",
    body: edit(custom(), { [`${C0}.resources.cpu`]: 0.1 }),
    code: "InvalidCpu",
    target: `${C0}.resources.cpu`,
    mentions: ["cpu", "0.25", "2"],
  },
  {
    name: "cpu above 2",
    body: edit(custom(), { [`${C0}.resources.cpu`]: 2.5 }),
    code: "InvalidCpu",
    target: `${C0}.resources.cpu`,
  },
  {
    name: "cpu not a number",
    body: edit(custom(), { [`${C0}.resources.cpu`]: "lots" }),
    code: "InvalidPropertyValue",
    target: `${C0}.resources.cpu`,
  },
  {
    name: "memory not a quantity",
    body: edit(custom(), { [`${C0}.resources.memory`]: "lots" }),
    code: "InvalidMemory",
    target: `${C0}.resources.memory`,
    mentions: ["memory", "Gi"],
  },
  {
    name: "memory unit unknown",
    body: edit(custom(), { [`${C0}.resources.memory`]: "1Tb" }),
    code: "InvalidMemory",
    target: `${C0}.resources.memory`,
  },
  {
    name: "memory above 4Gi",
    body: edit(custom(), { [`${C0}.resources.memory`]: "8Gi" }),
    code: "InvalidMemory",
    target: `${C0}.resources.memory`,
    mentions: ["memory", "0.5", "4"],
  },
  {
    name: "memory below 0.5Gi",
    body: edit(custom(), { [`${C0}.resources.memory`]: "256Mi" }),
    code: "InvalidMemory",
    target: `${C0}.resources.memory`,
  },
  {
    name: "memory as a number",
    body: edit(custom(), { [`${C0}.resources.memory`]: 1 }),
    code: "InvalidPropertyValue",
    target: `${C0}.resources.memory`,
  },
  // lifecycle
  {
    name: "cooldown 299",
    body: edit(python(), { [`${LC}.cooldownPeriodInSeconds`]: 299 }),
    code: "ValueOutOfRange",
    target: `${LC}.cooldownPeriodInSeconds`,
    mentions: ["cooldownPeriodInSeconds", "300", "3600"],
  },
  {
    name: "cooldown 3601",
    body: edit(python(), { [`${LC}.cooldownPeriodInSeconds`]: 3601 }),
    code: "ValueOutOfRange",
    target: `${LC}.cooldownPeriodInSeconds`,
  },
  {
    name: "legacy cooldown 3601",
    body: edit(python(), {
      "properties.dynamicPoolConfiguration": { executionType: "Timed", cooldownPeriodInSeconds: 3601 },
    }),
    code: "ValueOutOfRange",
    mentions: ["cooldownPeriodInSeconds", "3600"],
  },
  {
    name: "maxAlive 299",
    body: edit(custom(), {
      [LC]: { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: 299 },
    }),
    code: "ValueOutOfRange",
    target: `${LC}.maxAlivePeriodInSeconds`,
    mentions: ["maxAlivePeriodInSeconds", "300"],
  },
  {
    name: "maxAlive above a day",
    body: edit(custom(), {
      [LC]: { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: 86401 },
    }),
    code: "ValueOutOfRange",
    target: `${LC}.maxAlivePeriodInSeconds`,
  },
  {
    name: "maxAlive 299 with Timed",
    body: edit(python(), {
      [LC]: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300, maxAlivePeriodInSeconds: 299 },
    }),
    code: "ValueOutOfRange",
    target: `${LC}.maxAlivePeriodInSeconds`,
    mentions: ["maxAlivePeriodInSeconds", "300", "86400"],
  },
  {
    name: "cooldown with OnContainerExit",
    body: edit(custom(), {
      [LC]: { lifecycleType: "OnContainerExit", cooldownPeriodInSeconds: 300, maxAlivePeriodInSeconds: 3600 },
    }),
    code: "InvalidLifecycleConfiguration",
    target: `${LC}.cooldownPeriodInSeconds`,
    mentions: ["cooldownPeriodInSeconds", "Timed"],
  },
  {
    name: "OnContainerExit on PythonLTS",
    body: edit(python(), { [`${LC}.lifecycleType`]: "OnContainerExit" }),
    code: "InvalidLifecycleConfiguration",
    target: `${LC}.lifecycleType`,
    mentions: ["lifecycleType", "OnContainerExit", "CustomContainer"],
  },
  {
    name: "cooldown as a string",
    body: edit(python(), { [`${LC}.cooldownPeriodInSeconds`]: "600" }),
    code: "InvalidPropertyValue",
    target: `${LC}.cooldownPeriodInSeconds`,
  },
  // scale
  {
    name: "readySessionInstances above maxConcurrentSessions",
    body: edit(python(), {
      "properties.scaleConfiguration": { maxConcurrentSessions: 10, readySessionInstances: 11 },
    }),
    code: "SessionPoolInvalidReadySessionInstances",
    target: "properties.scaleConfiguration.readySessionInstances",
    mentions: ["readySessionInstances", "maxConcurrentSessions"],
  },
  {
    name: "readySessionInstances above the default maxConcurrentSessions",
    body: edit(python(), { "properties.scaleConfiguration.readySessionInstances": 11 }),
    code: "SessionPoolInvalidReadySessionInstances",
    target: "properties.scaleConfiguration.readySessionInstances",
  },
  {
    name: "readySessionInstances negative",
    body: edit(python(), { "properties.scaleConfiguration.readySessionInstances": -1 }),
    code: "SessionPoolInvalidReadySessionInstances",
    target: "properties.scaleConfiguration.readySessionInstances",
  },
  {
    name: "maxConcurrentSessions 0",
    body: edit(python(), { "properties.scaleConfiguration.maxConcurrentSessions": 0 }),
    code: "ValueOutOfRange",
    target: "properties.scaleConfiguration.maxConcurrentSessions",
    mentions: ["maxConcurrentSessions", "1"],
  },
  {
    name: "maxConcurrentSessions above the server cap",
    body: edit(python(), { "properties.scaleConfiguration.maxConcurrentSessions": 21 }),
    code: "ValueOutOfRange",
    target: "properties.scaleConfiguration.maxConcurrentSessions",
    mentions: ["maxConcurrentSessions", "20"],
  },
  {
    name: "maxConcurrentSessions as a string",
    body: edit(python(), { "properties.scaleConfiguration.maxConcurrentSessions": "10" }),
    code: "InvalidPropertyValue",
    target: "properties.scaleConfiguration.maxConcurrentSessions",
    mentions: ["maxConcurrentSessions", "integer"],
  },
  {
    name: "maxConcurrentSessions fractional",
    body: edit(python(), { "properties.scaleConfiguration.maxConcurrentSessions": 1.5 }),
    code: "InvalidPropertyValue",
    target: "properties.scaleConfiguration.maxConcurrentSessions",
  },
  // custom containers
  {
    name: "targetPort missing",
    body: edit(custom(), { "properties.customContainerTemplate.ingress": REMOVE }),
    code: "TargetPortRequired",
    target: "properties.customContainerTemplate.ingress.targetPort",
    mentions: ["targetPort", "65535"],
  },
  {
    name: "targetPort 0",
    body: edit(custom(), { "properties.customContainerTemplate.ingress.targetPort": 0 }),
    code: "InvalidPropertyValue",
    target: "properties.customContainerTemplate.ingress.targetPort",
  },
  {
    name: "targetPort 65536",
    body: edit(custom(), { "properties.customContainerTemplate.ingress.targetPort": 65536 }),
    code: "InvalidPropertyValue",
    target: "properties.customContainerTemplate.ingress.targetPort",
    mentions: ["targetPort", "65535"],
  },
  {
    name: "targetPort as a string",
    body: edit(custom(), { "properties.customContainerTemplate.ingress.targetPort": "80" }),
    code: "InvalidPropertyValue",
    target: "properties.customContainerTemplate.ingress.targetPort",
  },
  {
    name: "image missing",
    body: edit(custom(), { [`${C0}.image`]: REMOVE }),
    code: "ContainerImageRequired",
    target: `${C0}.image`,
  },
  {
    name: "image empty",
    body: edit(custom(), { [`${C0}.image`]: "  " }),
    code: "ContainerImageRequired",
    target: `${C0}.image`,
  },
  {
    name: "CustomContainer without a template",
    body: edit(custom(), { "properties.customContainerTemplate": REMOVE }),
    code: "ContainerImageRequired",
    target: "properties.customContainerTemplate.containers",
  },
  {
    name: "two containers",
    body: edit(custom(), {
      "properties.customContainerTemplate.containers[1]": { image: "busybox:latest", name: "second" },
    }),
    code: "TooManyContainers",
    target: "properties.customContainerTemplate.containers",
  },
  {
    name: "container name invalid",
    body: edit(custom(), { [`${C0}.name`]: "Main_1" }),
    code: "InvalidContainerName",
    target: `${C0}.name`,
  },
  {
    name: "customContainerTemplate on PythonLTS",
    body: edit(python(), {
      "properties.customContainerTemplate": (custom()["properties"] as Json)["customContainerTemplate"],
    }),
    code: "InvalidPropertyForContainerType",
    target: "properties.customContainerTemplate",
    mentions: ["customContainerTemplate", "PythonLTS"],
  },
  {
    name: "env secretRef names a missing secret",
    body: edit(custom(), { [`${C0}.env`]: [{ name: "TOKEN", secretRef: "nope" }] }),
    code: "SecretRefNotFound",
    target: `${C0}.env[0].secretRef`,
    mentions: ["secretRef", "nope"],
  },
  {
    name: "env with both value and secretRef",
    body: edit(custom(), { [`${C0}.env`]: [{ name: "TOKEN", value: "x", secretRef: "registry-password" }] }),
    code: "InvalidEnvironmentVariable",
    target: `${C0}.env[0]`,
    mentions: ["TOKEN", "secretRef"],
  },
  {
    name: "env name invalid",
    body: edit(custom(), { [`${C0}.env`]: [{ name: "1 bad", value: "x" }] }),
    code: "InvalidEnvironmentVariable",
    target: `${C0}.env[0].name`,
    mentions: ["1 bad"],
  },
  {
    name: "passwordSecretRef names a missing secret",
    body: edit(custom(), {
      "properties.customContainerTemplate.registryCredentials": {
        server: "registry.example.test",
        username: "puller",
        passwordSecretRef: "missing-secret",
      },
    }),
    code: "SecretRefNotFound",
    target: "properties.customContainerTemplate.registryCredentials.passwordSecretRef",
    mentions: ["passwordSecretRef", "missing-secret"],
  },
  {
    name: "registryCredentials without server",
    body: edit(custom(), {
      "properties.customContainerTemplate.registryCredentials": {
        username: "puller",
        passwordSecretRef: "registry-password",
      },
    }),
    code: "MissingRequiredProperty",
    target: "properties.customContainerTemplate.registryCredentials.server",
  },
  {
    name: "two Liveness probes",
    body: edit(custom(), {
      [`${C0}.probes`]: [
        { type: "Liveness", tcpSocket: { port: 8080 } },
        { type: "Liveness", tcpSocket: { port: 8080 } },
      ],
    }),
    code: "InvalidProbe",
    target: `${C0}.probes[1].type`,
    mentions: ["Liveness"],
  },
  {
    name: "probe port out of range",
    body: edit(custom(), { [`${C0}.probes`]: [{ type: "Liveness", tcpSocket: { port: 70000 } }] }),
    code: "InvalidPropertyValue",
    target: `${C0}.probes[0].tcpSocket.port`,
  },
  // secrets
  {
    name: "secret name with uppercase and underscore",
    body: edit(python(), { "properties.secrets": [{ name: "Bad_Name", value: "v" }] }),
    code: "InvalidSecretName",
    target: "properties.secrets[0].name",
    mentions: ["Bad_Name"],
  },
  {
    name: "secret name starting with a hyphen",
    body: edit(python(), { "properties.secrets": [{ name: "-lead", value: "v" }] }),
    code: "InvalidSecretName",
    target: "properties.secrets[0].name",
  },
  {
    name: "duplicate secret names",
    body: edit(python(), {
      "properties.secrets": [
        { name: "dup", value: "a" },
        { name: "dup", value: "b" },
      ],
    }),
    code: "DuplicateSecretName",
    target: "properties.secrets[1].name",
    mentions: ["dup"],
  },
  {
    name: "new secret without a value",
    body: edit(python(), { "properties.secrets": [{ name: "fresh" }] }),
    code: "SecretValueRequired",
    target: "properties.secrets[0].value",
    mentions: ["fresh"],
  },
  {
    name: "secrets not an array",
    body: edit(python(), { "properties.secrets": { name: "x", value: "y" } }),
    code: "InvalidPropertyValue",
    target: "properties.secrets",
  },
  // identity
  {
    name: "identity as a string",
    body: edit(python(), { identity: "SystemAssigned" }),
    code: "InvalidPropertyValue",
    target: "identity",
  },
  {
    name: "UserAssigned without identities",
    body: edit(python(), { identity: { type: "UserAssigned" } }),
    code: "InvalidIdentity",
    target: "identity.userAssignedIdentities",
  },
  {
    name: "userAssignedIdentities key not a resource id",
    body: edit(python(), { identity: { type: "UserAssigned", userAssignedIdentities: { "not-an-id": {} } } }),
    code: "InvalidIdentity",
    target: "identity.userAssignedIdentities",
    mentions: ["not-an-id"],
  },
  {
    name: "managedIdentitySettings 'system' without a system identity",
    body: edit(python(), {
      "properties.managedIdentitySettings": [{ identity: "system", lifecycle: "Main" }],
    }),
    code: "InvalidManagedIdentitySetting",
    target: "properties.managedIdentitySettings[0].identity",
  },
  // tags and wrong types
  {
    name: "tag value not a string",
    body: edit(python(), { tags: { team: 1 } }),
    code: "InvalidPropertyValue",
    target: "tags.team",
  },
  {
    name: "tag name with '<'",
    body: edit(python(), { tags: { "a<b": "x" } }),
    code: "InvalidTag",
    target: "tags",
    mentions: ["a<b"],
  },
  {
    name: "more than 50 tags",
    body: edit(python(), { tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`t${i}`, "v"])) }),
    code: "InvalidTag",
    target: "tags",
    mentions: ["50"],
  },
  {
    name: "properties an array",
    body: { location: "eastus", properties: [] },
    code: "InvalidPropertyValue",
    target: "properties",
  },
  {
    name: "properties null",
    body: { location: "eastus", properties: null },
    code: "InvalidPropertyValue",
    target: "properties",
  },
  {
    name: "scaleConfiguration a number",
    body: edit(python(), { "properties.scaleConfiguration": 5 }),
    code: "InvalidPropertyValue",
    target: "properties.scaleConfiguration",
  },
];

const badNames = [
  { name: "my-pool", why: "hyphen" },
  { name: "ab", why: "2 characters" },
  { name: `p${"a".repeat(63)}`, why: "64 characters" },
  { name: "MyPool", why: "uppercase" },
  { name: "1pool", why: "leading digit" },
  { name: "pool_1", why: "underscore" },
];

let s: TestServer;
let n = 0;
const fresh = () => `pool${++n}`;

before(async () => {
  s = await startTestServer({ maxSessionsCap: 20 });
});
after(async () => {
  await s.close();
});

describe("PUT bodies that break a rule get 400 in the ARM shape", () => {
  for (const c of badBodies) {
    it(c.name, async () => {
      const r = await call("PUT", poolUrl(s.url, c.pool ?? fresh()), { body: c.body });
      assertArmError(r, {
        status: 400,
        code: c.code,
        ...(c.target === undefined ? {} : { target: c.target }),
        ...(c.mentions ? { mentions: c.mentions } : {}),
      });
    });
  }
});

describe("pool names follow ^[a-z][a-z0-9]*$ with 3 to 63 characters", () => {
  for (const c of badNames) {
    it(`refuses ${c.why} (${c.name.length > 12 ? `${c.name.slice(0, 12)}...` : c.name})`, async () => {
      const r = await call("PUT", poolUrl(s.url, c.name), { body: python() });
      assertArmError(r, {
        status: 400,
        code: "InvalidResourceName",
        target: "name",
        mentions: [c.name, "3", "63"],
      });
      assert.equal((await call("GET", poolUrl(s.url, c.name))).status, 404);
    });
  }

  it("accepts 3 and 63 characters", async () => {
    for (const name of ["abc", `z${"9".repeat(62)}`]) {
      const r = await call("PUT", poolUrl(s.url, name), { body: python() });
      assert.equal(r.status, 201, r.text);
      assert.equal((r.body as Json)["name"], name);
    }
  });
});

describe("values at the edge of a range are accepted", () => {
  const accepted: { name: string; body: Json }[] = [
    { name: "cooldown 300", body: edit(python(), { [`${LC}.cooldownPeriodInSeconds`]: 300 }) },
    { name: "cooldown 3600", body: edit(python(), { [`${LC}.cooldownPeriodInSeconds`]: 3600 }) },
    {
      name: "maxConcurrentSessions at the cap",
      body: edit(python(), { "properties.scaleConfiguration.maxConcurrentSessions": 20 }),
    },
    {
      name: "readySessionInstances equal to maxConcurrentSessions",
      body: edit(python(), {
        "properties.scaleConfiguration": { maxConcurrentSessions: 3, readySessionInstances: 3 },
      }),
    },
    {
      name: "cpu 0.25 and memory 0.5Gi",
      body: edit(custom(), { [`${C0}.resources`]: { cpu: 0.25, memory: "0.5Gi" } }),
    },
    {
      name: "cpu 2 and memory 4Gi",
      body: edit(custom(), { [`${C0}.resources`]: { cpu: 2, memory: "4Gi" } }),
    },
    { name: "memory in Mi", body: edit(custom(), { [`${C0}.resources.memory`]: "512Mi" }) },
    {
      name: "targetPort 1",
      body: edit(custom(), { "properties.customContainerTemplate.ingress.targetPort": 1 }),
    },
    {
      name: "targetPort 65535",
      body: edit(custom(), { "properties.customContainerTemplate.ingress.targetPort": 65535 }),
    },
    {
      // The reference's "Timed lifecycle" example answers with exactly this: a client PUTs back what it read.
      name: "maxAlive with Timed (caps the session's life)",
      body: edit(custom(), {
        [LC]: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300, maxAlivePeriodInSeconds: 3600 },
      }),
    },
    {
      name: "maxAlive 86400 with OnContainerExit",
      body: edit(custom(), { [LC]: { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: 86400 } }),
    },
    {
      name: "secretRef and passwordSecretRef naming the pool's secret",
      body: edit(custom(), {
        [`${C0}.env`]: [{ name: "TOKEN", secretRef: "registry-password" }],
        "properties.customContainerTemplate.registryCredentials": {
          server: "registry.example.test",
          username: "puller",
          passwordSecretRef: "registry-password",
        },
      }),
    },
  ];
  for (const c of accepted) {
    it(c.name, async () => {
      const r = await call("PUT", poolUrl(s.url, fresh()), { body: c.body });
      assert.equal(r.status, 201, r.text);
    });
  }
});

describe("ARM matches enum values and property names without regard to case", () => {
  it("normalizes 'pythonlts', 'coolDownPeriodInSeconds' and other spellings to the schema's", async () => {
    const name = fresh();
    const r = await call("PUT", poolUrl(s.url, name), {
      body: {
        Location: "East US",
        Properties: {
          containerType: "pythonlts",
          ScaleConfiguration: { MaxConcurrentSessions: 4, readysessioninstances: 2 },
          dynamicPoolConfiguration: {
            lifecycleConfiguration: { lifecycletype: "timed", coolDownPeriodInSeconds: 900 },
          },
          sessionNetworkConfiguration: { status: "egressenabled" },
        },
      },
    });
    assert.equal(r.status, 201, r.text);
    const got = await call("GET", poolUrl(s.url, name));
    const body = got.body as Json;
    assert.equal(body["location"], "East US");
    assert.deepEqual(
      {
        containerType: (body["properties"] as Json)["containerType"],
        scaleConfiguration: (body["properties"] as Json)["scaleConfiguration"],
        dynamicPoolConfiguration: (body["properties"] as Json)["dynamicPoolConfiguration"],
        sessionNetworkConfiguration: (body["properties"] as Json)["sessionNetworkConfiguration"],
      },
      {
        containerType: "PythonLTS",
        scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 2 },
        dynamicPoolConfiguration: {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 900 },
        },
        sessionNetworkConfiguration: { status: "EgressEnabled" },
      },
    );
  });

  it("normalizes identity types, including the az CLI's 'SystemAssigned, UserAssigned'", async () => {
    const uami = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller`;
    const name = fresh();
    const r = await call("PUT", poolUrl(s.url, name), {
      body: edit(python(), {
        identity: { type: "systemassigned, userassigned", userAssignedIdentities: { [uami]: {} } },
      }),
    });
    assert.equal(r.status, 201, r.text);
    const identity = (r.body as Json)["identity"] as Json;
    assert.equal(identity["type"], "SystemAssigned,UserAssigned");
    assert.deepEqual(Object.keys(identity["userAssignedIdentities"] as Json), [uami]);
  });

  it("ignores properties it does not know, as ARM does", async () => {
    const r = await call("PUT", poolUrl(s.url, fresh()), {
      body: edit(python(), { "properties.somethingNew": { a: 1 }, extra: true }),
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(((r.body as Json)["properties"] as Json)["somethingNew"], undefined);
  });
});

describe("PATCH bodies are validated after the merge", () => {
  const patches: BadBody[] = [
    {
      name: "maxConcurrentSessions 0",
      body: { properties: { scaleConfiguration: { maxConcurrentSessions: 0 } } },
      code: "ValueOutOfRange",
      target: "properties.scaleConfiguration.maxConcurrentSessions",
    },
    {
      name: "maxConcurrentSessions below the kept readySessionInstances",
      body: { properties: { scaleConfiguration: { maxConcurrentSessions: 2 } } },
      code: "SessionPoolInvalidReadySessionInstances",
      target: "properties.scaleConfiguration.readySessionInstances",
    },
    {
      name: "cooldown 3601",
      body: {
        properties: {
          dynamicPoolConfiguration: { lifecycleConfiguration: { cooldownPeriodInSeconds: 3601 } },
        },
      },
      code: "ValueOutOfRange",
      target: `${LC}.cooldownPeriodInSeconds`,
    },
    {
      name: "network status unknown",
      body: { properties: { sessionNetworkConfiguration: { status: "Open" } } },
      code: "InvalidEnumValue",
      target: "properties.sessionNetworkConfiguration.status",
    },
    {
      name: "new secret without a value",
      body: { properties: { secrets: [{ name: "other" }] } },
      code: "SecretValueRequired",
      target: "properties.secrets[0].value",
    },
    {
      name: "a body that is not an object",
      body: ["tags"],
      code: "InvalidRequestContent",
    },
  ];
  const name = "patchtarget";
  before(async () => {
    const r = await call("PUT", poolUrl(s.url, name), {
      body: edit(python(), {
        "properties.scaleConfiguration": { maxConcurrentSessions: 10, readySessionInstances: 5 },
      }),
    });
    assert.equal(r.status, 201, r.text);
  });
  for (const c of patches) {
    it(c.name, async () => {
      const before = await call("GET", poolUrl(s.url, name));
      const r = await call("PATCH", poolUrl(s.url, name), { body: c.body });
      assertArmError(r, {
        status: 400,
        code: c.code,
        ...(c.target === undefined ? {} : { target: c.target }),
      });
      const afterwards = await call("GET", poolUrl(s.url, name));
      assert.equal(afterwards.headers["etag"], before.headers["etag"], "a refused PATCH changes nothing");
    });
  }
});

describe("paths, parameters and request framing", () => {
  const listUrl = (sub: string, rg?: string, query = "?api-version=2025-07-01") =>
    `${s.url}/subscriptions/${sub}${rg === undefined ? "" : `/resourceGroups/${rg}`}/providers/Microsoft.App/sessionPools${query}`;

  it("a subscription id that is not a GUID", async () => {
    for (const url of [
      listUrl("not-a-guid"),
      listUrl("12345", "rg1"),
      poolUrl(s.url, "abc").replace(SUB, "nope"),
    ]) {
      assertArmError(await call("GET", url), {
        status: 400,
        code: "InvalidSubscriptionId",
        target: "subscriptionId",
        mentions: ["subscription"],
      });
    }
  });

  it("an invalid resource group name", async () => {
    for (const rg of ["rg.", "r".repeat(91), "rg!x", "rg%2Fx"]) {
      assertArmError(await call("GET", listUrl(SUB, rg)), {
        status: 400,
        code: "InvalidResourceGroupName",
        target: "resourceGroupName",
        mentions: ["resource group"],
      });
    }
    assertArmError(await call("PUT", poolUrl(s.url, "abc", "2025-07-01", "bad."), { body: python() }), {
      status: 400,
      code: "InvalidResourceGroupName",
      target: "resourceGroupName",
      mentions: ["bad."],
    });
  });

  it("malformed JSON", async () => {
    const r = await call("PUT", poolUrl(s.url, fresh()), {
      raw: '{"location": "eastus",',
      headers: { "content-type": "application/json" },
    });
    assertArmError(r, { status: 400, code: "InvalidRequestContent", mentions: ["JSON"] });
  });

  it("JSON that is not an object: array, null, string, number", async () => {
    for (const raw of ["[]", '[{"location":"eastus"}]', "null", '"eastus"', "42"]) {
      const r = await call("PUT", poolUrl(s.url, fresh()), {
        raw,
        headers: { "content-type": "application/json" },
      });
      assertArmError(r, { status: 400, code: "InvalidRequestContent", mentions: ["object"] });
    }
  });

  it("an empty body and no body at all", async () => {
    const empty = await call("PUT", poolUrl(s.url, fresh()), {
      raw: "",
      headers: { "content-type": "application/json" },
    });
    assertArmError(empty, { status: 400, code: "InvalidRequestContent" });
    const none = await call("PUT", poolUrl(s.url, fresh()));
    assertArmError(none, { status: 400, code: "InvalidRequestContent" });
  });

  it("regression: deeply nested JSON gets 400, not a 500 from a stack overflow", async () => {
    const arrays = (n: number) => "[".repeat(n) + "]".repeat(n);
    const objects = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
    const existing = fresh();
    assert.equal((await call("PUT", poolUrl(s.url, existing), { body: python() })).status, 201);
    const cases: [string, string][] = [
      ["PUT", `{"location":${arrays(10_000)}}`],
      ["PUT", `{"location":"eastus","tags":${objects(100_000)}}`],
      [
        "PUT",
        `{"location":"eastus","properties":{"scaleConfiguration":{"maxConcurrentSessions":${arrays(100_000)}}}}`,
      ],
      ["PATCH", `{"tags":${objects(100_000)}}`],
      ["PATCH", `{"identity":{"type":"UserAssigned","userAssignedIdentities":{"a":${objects(100_000)}}}}`],
    ];
    for (const [method, raw] of cases) {
      const r = await call(method, poolUrl(s.url, existing), {
        raw,
        headers: { "content-type": "application/json" },
      });
      assertArmError(r, { status: 400, code: "InvalidRequestContent", mentions: ["levels deep"] });
    }
    // A body as deep as a real one (probe headers sit 10 levels down) is fine.
    const probe = { type: "Liveness", httpGet: { port: 8080, httpHeaders: [{ name: "x", value: "y" }] } };
    const ok = await call("PUT", poolUrl(s.url, fresh()), {
      body: edit(custom(), { [`${C0}.probes`]: [probe] }),
    });
    assert.equal(ok.status, 201, ok.text);
  });

  it("a body that tries prototype pollution gets 400", async () => {
    for (const raw of [
      '{"location":"eastus","__proto__":{"admin":true}}',
      '{"location":"eastus","constructor":{"prototype":{"admin":true}}}',
    ]) {
      const r = await call("PUT", poolUrl(s.url, fresh()), {
        raw,
        headers: { "content-type": "application/json" },
      });
      assertArmError(r, { status: 400, code: "InvalidRequestContent" });
    }
  });

  it("an oversized body gets 413 in the ARM shape", async () => {
    const raw = JSON.stringify({ location: "eastus", tags: { big: "x".repeat(5 * 1024 * 1024) } });
    const r = await call("PUT", poolUrl(s.url, fresh()), {
      raw,
      headers: { "content-type": "application/json" },
    });
    assertArmError(r, { status: 413, code: "RequestEntityTooLarge" });
  });

  it("an unsupported Content-Type gets 415", async () => {
    for (const type of ["application/xml", "text/plain", "application/x-www-form-urlencoded"]) {
      const r = await call("PUT", poolUrl(s.url, fresh()), {
        raw: type === "text/plain" ? JSON.stringify(python()) : "location=eastus",
        headers: { "content-type": type },
      });
      assertArmError(r, { status: 415, code: "UnsupportedMediaType", mentions: ["application/json"] });
    }
  });

  it("application/json with a charset is fine, and PATCH takes application/merge-patch+json", async () => {
    const name = fresh();
    const put = await call("PUT", poolUrl(s.url, name), {
      raw: JSON.stringify(python()),
      headers: { "content-type": "application/json; charset=utf-8" },
    });
    assert.equal(put.status, 201, put.text);
    const patch = await call("PATCH", poolUrl(s.url, name), {
      raw: JSON.stringify({ tags: { via: "merge-patch" } }),
      headers: { "content-type": "application/merge-patch+json" },
    });
    assert.equal(patch.status, 202, patch.text);
    assert.deepEqual((patch.body as Json)["tags"], { via: "merge-patch" });
  });

  it("an unknown route gets 404 in the ARM shape", async () => {
    for (const path of [
      "/nothing/here",
      `/subscriptions/${SUB}/providers/Microsoft.App/containerApps?api-version=2025-07-01`,
      `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/sessionPools/abc/unknownAction?api-version=2025-07-01`,
    ]) {
      const r = await call("POST", `${s.url}${path}`, { body: {} });
      assertArmError(r, { status: 404, code: "NotFound", mentions: [path.split("?")[0]!] });
    }
  });

  it("a wrong method on a known path gets 405 with Allow", async () => {
    const cases: [string, string, string][] = [
      ["POST", poolUrl(s.url, "abc"), "GET, PUT, PATCH, DELETE"],
      ["DELETE", listUrl(SUB, "rg1"), "GET"],
      ["PUT", listUrl(SUB), "GET"],
      ["GET", poolUrl(s.url, "abc").replace("?", "/getAuthtoken?"), "POST"],
    ];
    for (const [method, url, allow] of cases) {
      const r = await call(method, url, method === "PUT" ? { body: {} } : {});
      assertArmError(r, { status: 405, code: "MethodNotAllowed", mentions: [method] });
      assert.equal(r.headers["allow"], allow);
    }
  });

  it("a missing api-version", async () => {
    for (const [method, url] of [
      ["GET", listUrl(SUB, "rg1", "")],
      ["PUT", poolUrl(s.url, "abc").split("?")[0]!],
      ["GET", poolUrl(s.url, "abc", "")],
    ] as const) {
      const r = await call(method, url, method === "PUT" ? { body: python() } : {});
      assertArmError(r, {
        status: 400,
        code: "MissingApiVersionParameter",
        mentions: ["api-version", ...SUPPORTED_ARM_API_VERSIONS],
      });
    }
  });

  it("an unknown api-version lists the supported ones", async () => {
    for (const version of ["2023-05-01", "2025-07-01-preview", "latest"]) {
      const r = await call("GET", listUrl(SUB, "rg1", `?api-version=${version}`));
      assertArmError(r, {
        status: 400,
        code: "InvalidApiVersionParameter",
        mentions: [version, ...SUPPORTED_ARM_API_VERSIONS],
      });
    }
  });

  it("a $skipToken that was not issued by the server", async () => {
    for (const token of ["zzz", "", Buffer.from("a/b/c/d").toString("base64url")]) {
      const r = await call("GET", listUrl(SUB, "rg1", `?api-version=2025-07-01&$skipToken=${token}`));
      if (token === "") assert.equal(r.status, 200, r.text);
      else assertArmError(r, { status: 400, code: "InvalidSkipToken", target: "$skipToken" });
    }
  });

  it("a secret value is not echoed in the error about it", async () => {
    const marker = "TOPSECRET-marker-".repeat(5000);
    const r = await call("PUT", poolUrl(s.url, fresh()), {
      body: edit(python(), { "properties.secrets": [{ name: "big", value: marker }] }),
    });
    assertArmError(r, { status: 400, code: "InvalidPropertyValue", target: "properties.secrets[0].value" });
    assert.ok(!r.text.includes("TOPSECRET"), r.text);
  });
});

describe("no request gets a 5xx", () => {
  const paths = [
    () => poolUrl(s.url, fresh()),
    () => poolUrl(s.url, "patchtarget"),
    () =>
      `${s.url}/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/sessionPools?api-version=2025-07-01`,
    () =>
      `${s.url}/subscriptions/${SUB}/providers/Microsoft.App/locations/eastus/sessionPoolOperationStatuses/x?api-version=2025-07-01`,
    () =>
      `${s.url}/subscriptions/${SUB}/providers/Microsoft.App/locations/eastus/sessionPoolOperationResults/x?api-version=2025-07-01`,
    () => poolUrl(s.url, "patchtarget").replace("?", "/getAuthtoken?"),
  ];
  // Bodies shaped like a pool with arbitrary JSON dropped into its properties, or arbitrary JSON altogether.
  const key = fc.constantFrom(
    "location",
    "tags",
    "identity",
    "properties",
    "containerType",
    "scaleConfiguration",
    "secrets",
    "dynamicPoolConfiguration",
    "lifecycleConfiguration",
    "customContainerTemplate",
    "containers",
    "ingress",
    "registryCredentials",
    "managedIdentitySettings",
    "probes",
    "__proto__",
    "constructor",
  );
  const poolish = fc.record({
    location: fc.oneof(fc.constant("eastus"), fc.jsonValue()),
    properties: fc.dictionary(key, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
  });
  const body = fc.oneof(
    poolish,
    fc.jsonValue({ maxDepth: 4 }),
    fc.dictionary(key, fc.jsonValue({ maxDepth: 3 })),
  );

  it("fuzzed bodies, methods and paths answer 2xx or 4xx with a well-formed body", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("PUT", "PATCH", "GET", "DELETE", "POST"),
        fc.nat(paths.length - 1),
        body,
        async (method, p, b) => {
          const r = await call(method, paths[p]!(), ["GET", "DELETE"].includes(method) ? {} : { body: b });
          assert.ok(r.status < 500, `${method} ${paths[p]!()} ${JSON.stringify(b)} -> ${r.status} ${r.text}`);
          if (r.status >= 400) assert.ok((r.body as { error?: { code?: unknown } }).error?.code, r.text);
        },
      ),
      { numRuns: 300 },
    );
  });
});
