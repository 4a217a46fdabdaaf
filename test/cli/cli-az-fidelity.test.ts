// Where `sessionpool` must behave as az does (issue 12, item 14), run as a user runs it (bin/sessionpool in a child
// process) against a real server without a sandbox runtime; each result is checked with a GET of the pool over HTTP.
// update --location, "empty string to clear" for --env-vars/--secrets/--command/--args, --secrets replacing the
// list, and exit status 3 for whatever is not found.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { call, poolUrl, startTestServer, type TestServer, tempDir } from "../helpers/server.ts";
import { assertOneErrorLine, type CliRun, cliRunner } from "./cli-helpers.ts";

// biome-ignore lint/suspicious/noExplicitAny: the tests read nested JSON the server returns.
type Json = Record<string, any>;

const RG = "azfid";
let server: TestServer;
let configDir: string;
let sp: ReturnType<typeof cliRunner>;
let seq = 0;

function ok(r: CliRun): CliRun {
  assert.equal(r.code, 0, `exit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`);
  return r;
}

async function getPool(name: string): Promise<Json> {
  const r = await call("GET", poolUrl(server.url, name, "2025-07-01", RG), { token: server.token });
  assert.equal(r.status, 200, r.text);
  return r.body as Json;
}

function container(pool: Json): Json {
  return pool.properties.customContainerTemplate.containers[0];
}

function secretNames(pool: Json): string[] {
  return ((pool.properties.secrets ?? []) as Json[]).map((s) => s.name);
}

/** A fresh custom-container pool with env vars, command, args and two secrets nothing refers to. */
async function customPool(extra: string[] = []): Promise<string> {
  const name = `azfid${process.pid}x${++seq}`;
  ok(
    await sp([
      "create",
      "-n",
      name,
      "-g",
      RG,
      "--location",
      "westeurope",
      "--container-type",
      "CustomContainer",
      "-i",
      "myacr.azurecr.io/app:v1",
      "--target-port",
      "8080",
      "--max-sessions",
      "2",
      "--ready-sessions",
      "1",
      "--env-vars",
      "MODE=prod",
      "LEVEL=debug",
      "--command",
      "/bin/server",
      "--args",
      "--port",
      "8080",
      "-s",
      "alpha=1",
      "beta=2",
      ...extra,
      "-o",
      "none",
    ]),
  );
  const c = container(await getPool(name));
  assert.deepEqual(c.env.slice(0, 2), [
    { name: "MODE", value: "prod" },
    { name: "LEVEL", value: "debug" },
  ]);
  assert.deepEqual(c.command, ["/bin/server"]);
  assert.deepEqual(c.args, ["--port", "8080"]);
  return name;
}

before(async () => {
  server = await startTestServer();
  configDir = tempDir("sessionpool-cli-azfid-");
  sp = cliRunner({ url: server.url, token: server.token, configDir });
});

after(async () => {
  await server?.close();
  rmSync(configDir, { recursive: true, force: true });
});

describe("update --location", () => {
  it("is a flag of update; the pool's own location (any spelling) changes nothing and sends no PATCH", async () => {
    const help = ok(await sp(["update", "--help"]));
    assert.match(help.stdout, /-l, --location <location>/);

    const name = await customPool();
    const r = ok(await sp(["update", "-n", name, "-g", RG, "--location", "West Europe", "--debug"]));
    const calls = r.stderr.split("\n").filter((l) => l.startsWith("DEBUG: "));
    assert.deepEqual(
      calls.map((l) => l.split(" ")[1]),
      ["GET"],
      `only the GET of the pool:\n${r.stderr}`,
    );
    assert.equal(JSON.parse(r.stdout).location, "westeurope");
    assert.equal((await getPool(name)).location, "westeurope");
  });

  it("another location is sent, and the server's refusal is shown with exit status 1; nothing else changes", async () => {
    const name = await customPool();
    const [alone, withOthers] = await Promise.all([
      sp(["update", "-n", name, "-g", RG, "--location", "eastus"]),
      sp(["update", "-n", name, "-g", RG, "-l", "eastus", "--max-sessions", "5", "--debug"]),
    ]);
    assert.equal(alone.code, 1, alone.stderr);
    assertOneErrorLine(alone, /^ERROR: \(PropertyNotUpdatable\) 'location' cannot be updated by PATCH/);
    assert.equal(withOthers.code, 1, withOthers.stderr);
    assert.match(withOthers.stderr, /DEBUG: PATCH \S+ -> 400 PropertyNotUpdatable/);
    const pool = await getPool(name);
    assert.equal(pool.location, "westeurope");
    assert.equal(pool.properties.scaleConfiguration.maxConcurrentSessions, 2);
  });
});

describe('an empty string clears a list, as in az ("Empty string to clear existing values")', () => {
  it('update --env-vars "" removes every environment variable', async () => {
    const name = await customPool();
    ok(await sp(["update", "-n", name, "-g", RG, "--env-vars", "", "-o", "none"]));
    const c = container(await getPool(name));
    assert.deepEqual(c.env ?? [], []);
    assert.deepEqual(c.command, ["/bin/server"], "only the env vars change");
    assert.deepEqual(c.args, ["--port", "8080"]);
  });

  it('update --command "" removes the command', async () => {
    const name = await customPool();
    ok(await sp(["update", "-n", name, "-g", RG, "--command", "", "-o", "none"]));
    const c = container(await getPool(name));
    assert.deepEqual(c.command ?? [], []);
    assert.deepEqual(c.args, ["--port", "8080"]);
    assert.equal(c.env.length, 2);
  });

  it('update --args "" removes the arguments', async () => {
    const name = await customPool();
    ok(await sp(["update", "-n", name, "-g", RG, "--args", "", "-o", "none"]));
    const c = container(await getPool(name));
    assert.deepEqual(c.args ?? [], []);
    assert.deepEqual(c.command, ["/bin/server"]);
  });

  it('update --secrets "" deletes every secret', async () => {
    const name = await customPool();
    assert.deepEqual(secretNames(await getPool(name)), ["alpha", "beta"]);
    const r = ok(await sp(["update", "-n", name, "-g", RG, "--secrets", "", "-o", "none"]));
    assert.equal(r.stderr, "", "clearing on purpose is not warned about");
    assert.deepEqual(secretNames(await getPool(name)), []);
  });

  it('create with "" for each list sends none of them', async () => {
    const name = `azfid${process.pid}empty`;
    ok(
      await sp([
        "create",
        "-n",
        name,
        "-g",
        RG,
        "--container-type",
        "CustomContainer",
        "--target-port",
        "8080",
        "--max-sessions",
        "2",
        "--ready-sessions",
        "1",
        "--env-vars",
        "",
        "--command",
        "",
        "--args",
        "",
        "--secrets",
        "",
        "-o",
        "none",
      ]),
    );
    const pool = await getPool(name);
    const c = container(pool);
    assert.deepEqual(c.env ?? [], []);
    assert.deepEqual(c.command ?? [], []);
    assert.deepEqual(c.args ?? [], []);
    assert.deepEqual(secretNames(pool), []);
  });

  it("an empty string among other values is a value, not a clear: an argument may be empty, a pair may not", async () => {
    const name = await customPool();
    ok(await sp(["update", "-n", name, "-g", RG, "--args", "-c", "", "-o", "none"]));
    assert.deepEqual(container(await getPool(name)).args, ["-c", ""]);
    const bad = await sp(["update", "-n", name, "-g", RG, "--env-vars", "A=1", ""]);
    assert.equal(bad.code, 2);
    assertOneErrorLine(bad, /^ERROR: --env-vars: environment variables must be in the format .*\(got ''\)/);
    assert.equal(container(await getPool(name)).env.length, 2);
  });
});

describe("update --secrets replaces the pool's secrets, as az does", () => {
  it("secrets not named are deleted, with a warning naming them; the pool keeps exactly those given", async () => {
    const name = await customPool();
    const r = ok(await sp(["update", "-n", name, "-g", RG, "-s", "beta=3", "gamma=4", "-o", "none"]));
    assert.match(
      r.stderr,
      /^WARNING: --secrets replaces the pool's secrets: alpha will be deleted\. To keep a secret, name it in --secrets with its value\.\n$/,
    );
    assert.deepEqual(secretNames(await getPool(name)).sort(), ["beta", "gamma"]);
  });

  it("a secret an env var still refers to cannot be dropped: the server refuses, and the secrets stay", async () => {
    const name = await customPool(["--env-vars", "KEY=secretref:alpha"]);
    const r = await sp(["update", "-n", name, "-g", RG, "-s", "beta=3", "--only-show-errors"]);
    assert.equal(r.code, 1, r.stderr);
    assertOneErrorLine(r, /^ERROR: \(SecretRefNotFound\) .*alpha/);
    assert.deepEqual(secretNames(await getPool(name)), ["alpha", "beta"]);
  });
});

describe("not found exits 3, as az's ResourceNotFound does", () => {
  const missing = ["-n", "nosuchpool", "-g", RG];

  it("show, update, get-token and delete without --yes on a missing pool: exit 3, the server's error on stderr", async () => {
    const ids = `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/${RG}/providers/Microsoft.App/sessionPools/nosuchpool`;
    const runs: [string, string[]][] = [
      ["show", ["show", ...missing]],
      ["show --ids", ["show", "--ids", ids]],
      ["update", ["update", ...missing, "--max-sessions", "3"]],
      ["update --location", ["update", ...missing, "--location", "eastus"]],
      ["get-token", ["get-token", ...missing]],
      ["delete", ["delete", ...missing]],
    ];
    const results = await Promise.all(runs.map(([, args]) => sp(args)));
    results.forEach((r, i) => {
      assert.equal(r.code, 3, `${runs[i]![0]}: exit ${r.code}\n${r.stderr}`);
      assertOneErrorLine(r, /^ERROR: \(ResourceNotFound\) .*nosuchpool/);
    });
  });

  it("session commands on a missing pool exit 3", async () => {
    const runs: string[][] = [
      ["session", "code-interpreter", "execute", ...missing, "-i", "u1", "--code", "1+1"],
      ["session", "code-interpreter", "list-files", ...missing, "-i", "u1"],
      ["session", "code-interpreter", "show-file-content", ...missing, "-i", "u1", "--filename", "x"],
      ["session", "list", ...missing],
      ["session", "show", ...missing, "-i", "u1"],
      ["session", "stop", ...missing, "-i", "u1"],
      ["session", "delete", ...missing, "-i", "u1"],
    ];
    const results = await Promise.all(runs.map((args) => sp(args)));
    results.forEach((r, i) => {
      assert.equal(r.code, 3, `${runs[i]!.slice(0, 3).join(" ")}: exit ${r.code}\n${r.stderr}`);
      assertOneErrorLine(r, /^ERROR: \(ResourceNotFound\) .*nosuchpool/);
    });
  });

  it("a missing session of a pool that exists exits 3 too", async () => {
    const name = await customPool();
    const r = await sp(["session", "show", "-n", name, "-g", RG, "-i", "nobody"]);
    assert.equal(r.code, 3, r.stderr);
    assertOneErrorLine(r, /^ERROR: \(\w*NotFound\) /);
  });

  it("delete --yes of a missing pool succeeds (DELETE answers 204, as in Azure); without --yes an existing pool still needs it", async () => {
    const gone = ok(await sp(["delete", ...missing, "--yes"]));
    assert.equal(gone.stdout, "");
    const name = await customPool();
    const refused = await sp(["delete", "-n", name, "-g", RG]);
    assert.equal(refused.code, 2);
    assertOneErrorLine(refused, /^ERROR: deleting \S+ needs confirmation.*--yes/);
    await getPool(name);
  });

  it("connection problems exit 4, apart from not found", async () => {
    const r = await sp(["show", ...missing], { env: { SESSIONPOOL_ENDPOINT: "http://127.0.0.1:9" } });
    assert.equal(r.code, 4, r.stderr);
    assertOneErrorLine(r, /^ERROR: \(ConnectionRefused\) /);
    const denied = await sp(["show", ...missing], { env: { SESSIONPOOL_TOKEN: "not-the-token" } });
    assert.equal(denied.code, 4, denied.stderr);
  });
});
