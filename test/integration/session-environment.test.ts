// Sessions personalised at claim time on the real engine (docs/personalisation.md): PUT /session?identifier=ID with
// environment variables, literal or from a pool secret, visible to the interpreter and what it starts, for
// PythonLTS, NodeLTS and Shell pools; never echoed; per session; 201/200/409; kept across a server restart.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call } from "../helpers/server.ts";

const API = "api-version=2025-10-02-preview";
const SECRET = "s3cr3t-value-9f2c";
const GREETING = "hello from alice's settings";

let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer();
  const created = await Promise.all([
    fx.createPool("pypool", {
      scaleConfiguration: { maxConcurrentSessions: 6, readySessionInstances: 2 },
      secrets: [{ name: "api-key", value: SECRET }],
    }),
    fx.createPool("nodepool", {
      containerType: "NodeLTS",
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
      secrets: [{ name: "api-key", value: SECRET }],
    }),
    fx.createPool("shellpool", {
      containerType: "Shell",
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
      secrets: [{ name: "api-key", value: SECRET }],
    }),
  ]);
  for (const op of created) assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  await fx?.close();
});

const sessionUrl = (pool: string, id: string) =>
  `${fx.endpoint(pool)}/session?${API}&identifier=${encodeURIComponent(id)}`;

const ALICE_ENV = [
  { name: "GREETING", value: GREETING },
  { name: "API_KEY", secretRef: "api-key" },
];

function claim(pool: string, id: string, environmentVariables: unknown) {
  return call("PUT", sessionUrl(pool, id), { body: { environmentVariables } });
}

function stdoutOf(r: { status: number; text: string; body: unknown }): string {
  assert.equal(r.status, 200, r.text);
  const body = r.body as { result: { stdout: string; stderr: string } };
  return body.result.stdout;
}

function assertNoValues(text: string): void {
  assert.ok(!text.includes(SECRET), `a secret's value was echoed: ${text}`);
  assert.ok(!text.includes(GREETING), `a value was echoed: ${text}`);
}

describe("a PythonLTS session personalised at claim time", () => {
  it("claims a warm sandbox (201), sets the variables for the interpreter and its subprocesses, echoes no value", async () => {
    const warm = await fx.containers("pypool");
    const r = await claim("pypool", "alice", ALICE_ENV);
    assert.equal(r.status, 201, r.text);
    assertNoValues(r.text);
    const body = r.body as { identifier: string; etag: string; environmentVariables: { name: string }[] };
    assert.equal(body.identifier, "alice");
    assert.deepEqual(body.environmentVariables, [{ name: "API_KEY" }, { name: "GREETING" }]);
    assert.ok(
      warm.some((id) => id.startsWith(body.etag)),
      "the session is a sandbox that was already warm: no engine call on this path",
    );

    const out = stdoutOf(
      await fx.exec(
        "pypool",
        "alice",
        [
          "import os, subprocess",
          "print(os.environ['GREETING'])",
          "print(os.environ['API_KEY'])",
          "print(subprocess.run(['sh', '-c', 'echo child:$API_KEY'], capture_output=True, text=True).stdout)",
        ].join("\n"),
      ),
    );
    assert.match(out, new RegExp(`^${GREETING}$`, "m"));
    assert.match(out, new RegExp(`^${SECRET}$`, "m"));
    assert.match(out, new RegExp(`^child:${SECRET}$`, "m"));
  });

  it("answers 200 for the same variables in any order, 409 for other ones; GET and the list show names only", async () => {
    const again = await claim("pypool", "alice", [...ALICE_ENV].reverse());
    assert.equal(again.status, 200, again.text);
    assertNoValues(again.text);

    const other = await claim("pypool", "alice", [{ name: "GREETING", value: "something else" }]);
    assert.equal(other.status, 409, other.text);
    assert.equal((other.body as { error: { code: string } }).error.code, "SessionEnvironmentConflict");
    const none = await claim("pypool", "alice", []);
    assert.equal(none.status, 409, "no variables are other variables than alice's");

    const get = await call("GET", sessionUrl("pypool", "alice"));
    assert.equal(get.status, 200, get.text);
    assertNoValues(get.text);
    assert.deepEqual((get.body as { environmentVariables: unknown }).environmentVariables, [
      { name: "API_KEY" },
      { name: "GREETING" },
    ]);
    const list = await call("GET", `${fx.endpoint("pypool")}/listSessions?${API}`);
    assert.equal(list.status, 200);
    assertNoValues(list.text);
  });

  it("keeps each session's variables to itself: another identifier, claimed or not, never sees them", async () => {
    const bob = await claim("pypool", "bobby", [{ name: "GREETING", value: "bob's" }]);
    assert.equal(bob.status, 201, bob.text);
    const bobOut = stdoutOf(
      await fx.exec(
        "pypool",
        "bobby",
        "import os\nprint(os.environ.get('GREETING'), os.environ.get('API_KEY'))",
      ),
    );
    assert.equal(bobOut.trim(), "bob's None");
    // A session made by an execution (Azure's way) has none of them.
    const carolOut = stdoutOf(
      await fx.exec(
        "pypool",
        "carol",
        "import os\nprint(os.environ.get('GREETING'), os.environ.get('API_KEY'))",
      ),
    );
    assert.equal(carolOut.trim(), "None None");
    // A claim without variables of an existing plain session is the same session.
    assert.equal((await claim("pypool", "carol", [])).status, 200);
  });

  it("refuses bad variables with 400 in the data plane's shape, and claims nothing", async () => {
    const cases: [unknown, string, RegExp][] = [
      [[{ name: "PATH", value: "/tmp" }], "InvalidEnvironmentVariable", /reserved/],
      [[{ name: "PYTHONPATH", value: "/tmp" }], "InvalidEnvironmentVariable", /reserved/],
      [[{ name: "LD_PRELOAD", value: "/tmp/x.so" }], "InvalidEnvironmentVariable", /reserved/],
      [[{ name: "1BAD", value: "x" }], "InvalidEnvironmentVariable", /letters, digits and '_'/],
      [[{ name: "A-B", value: "x" }], "InvalidEnvironmentVariable", /letters, digits and '_'/],
      [[{ name: "X", value: "a\u0000b" }], "InvalidEnvironmentVariable", /NUL/],
      [[{ name: "X" }], "InvalidEnvironmentVariable", /exactly one of 'value' and 'secretRef'/],
      [[{ name: "X", value: "1", secretRef: "api-key" }], "InvalidEnvironmentVariable", /exactly one/],
      [
        [
          { name: "X", value: "1" },
          { name: "X", value: "2" },
        ],
        "InvalidEnvironmentVariable",
        /more than once/,
      ],
      [[{ name: "X", secretRef: "no-such-secret" }], "SecretRefNotFound", /names no secret/],
      [
        Array.from({ length: 65 }, (_, i) => ({ name: `V${i}`, value: "x" })),
        "InvalidEnvironmentVariable",
        /at most 64/,
      ],
      [[{ name: "BIG", value: "x".repeat(32 * 1024 + 1) }], "InvalidEnvironmentVariable", /at most 32768/],
      [
        Array.from({ length: 5 }, (_, i) => ({ name: `V${i}`, value: "x".repeat(30 * 1024) })),
        "InvalidEnvironmentVariable",
        /at most 131072/,
      ],
      ["not a list", "InvalidEnvironmentVariable", /must be an array/],
    ];
    for (const [vars, code, message] of cases) {
      const r = await claim("pypool", "mallory", vars);
      assert.equal(r.status, 400, `${JSON.stringify(vars).slice(0, 80)}: ${r.text}`);
      const error = (r.body as { error: { code: string; message: string } }).error;
      assert.equal(error.code, code, r.text);
      assert.match(error.message, message);
    }
    const get = await call("GET", sessionUrl("pypool", "mallory"));
    assert.equal(get.status, 404, "a refused claim made no session");
  });
});

describe("NodeLTS and Shell sessions personalised at claim time", () => {
  it("NodeLTS: process.env and child processes see the variables", async () => {
    const r = await claim("nodepool", "alice", ALICE_ENV);
    assert.equal(r.status, 201, r.text);
    const out = stdoutOf(
      await fx.exec(
        "nodepool",
        "alice",
        [
          "console.log(process.env.GREETING)",
          "console.log(process.env.API_KEY)",
          "console.log(require('child_process').execSync('echo child:$API_KEY').toString().trim())",
        ].join("\n"),
      ),
    );
    assert.match(out, new RegExp(`^${GREETING}$`, "m"));
    assert.match(out, new RegExp(`^${SECRET}$`, "m"));
    assert.match(out, new RegExp(`^child:${SECRET}$`, "m"));
  });

  it("Shell: $NAME in the session's commands", async () => {
    const r = await claim("shellpool", "alice", ALICE_ENV);
    assert.equal(r.status, 201, r.text);
    const out = stdoutOf(
      await call("POST", `${fx.endpoint("shellpool")}/executions?${API}&identifier=alice`, {
        body: { shellCommand: 'echo "$GREETING"; echo "key:$API_KEY"' },
      }),
    );
    assert.match(out, new RegExp(`^${GREETING}$`, "m"));
    assert.match(out, new RegExp(`^key:${SECRET}$`, "m"));
    const other = stdoutOf(
      await call("POST", `${fx.endpoint("shellpool")}/executions?${API}&identifier=bobby`, {
        body: { shellCommand: 'echo "[$GREETING][$API_KEY]"' },
      }),
    );
    assert.equal(other.trim(), "[][]");
  });
});

describe("after a restart of the server", () => {
  it("the adopted session keeps its variables, its names, and the 200/409 answers", async () => {
    await fx.stop();
    await fx.restart();
    const again = await claim("pypool", "alice", ALICE_ENV);
    assert.equal(again.status, 200, again.text);
    assert.equal((await claim("pypool", "alice", [{ name: "GREETING", value: "x" }])).status, 409);
    const get = await call("GET", sessionUrl("pypool", "alice"));
    assert.deepEqual((get.body as { environmentVariables: unknown }).environmentVariables, [
      { name: "API_KEY" },
      { name: "GREETING" },
    ]);
    const out = stdoutOf(await fx.exec("pypool", "alice", "import os\nprint(os.environ['API_KEY'])"));
    assert.equal(out.trim(), SECRET);
  });
});
