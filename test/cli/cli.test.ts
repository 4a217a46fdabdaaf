// The CLI as a user runs it (bin/sessionpool in a child process) against a real server without a sandbox
// runtime: pool management, output formats, errors and exit statuses, login profiles, help.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { buildProgram } from "../../src/cli/program.ts";
import { call, poolUrl, ROOT, SUB, startTestServer, type TestServer, tempDir } from "../helpers/server.ts";
import { assertOneErrorLine, type CliRun, cliRunner } from "./cli-helpers.ts";

// biome-ignore lint/suspicious/noExplicitAny: the tests read nested JSON the server returns.
type Json = Record<string, any>;

let server: TestServer;
let configDir: string;
let sp: ReturnType<typeof cliRunner>;

async function apiPool(name: string): Promise<Json> {
  const r = await call("GET", poolUrl(server.url, name, "2025-07-01"), { token: server.token });
  assert.equal(r.status, 200, r.text);
  return r.body as Json;
}

function ok(r: CliRun): CliRun {
  assert.equal(r.code, 0, `exit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`);
  return r;
}

before(async () => {
  server = await startTestServer();
  configDir = tempDir("sessionpool-cli-config-");
  sp = cliRunner({ url: server.url, token: server.token, configDir });
});

after(async () => {
  await server?.close();
  rmSync(configDir, { recursive: true, force: true });
});

describe("sessionpool create", () => {
  it("creates a pool with az's defaults, waits for it and prints it", async () => {
    const r = ok(await sp(["create", "-n", "pdefault", "-g", "rg1"]));
    assert.equal(r.stderr, "", "on a pipe the wait shows no progress");
    const printed = JSON.parse(r.stdout) as Json;
    assert.equal(printed.name, "pdefault");
    assert.equal(printed.properties.provisioningState, "Succeeded");
    const pool = await apiPool("pdefault");
    assert.equal(pool.location, "local");
    assert.equal(pool.identity, undefined);
    const p = pool.properties;
    assert.equal(p.containerType, "PythonLTS");
    assert.equal(p.poolManagementType, "Dynamic");
    assert.deepEqual(p.scaleConfiguration, { maxConcurrentSessions: 10, readySessionInstances: 5 });
    assert.deepEqual(p.dynamicPoolConfiguration, {
      lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 300 },
    });
    assert.deepEqual(p.sessionNetworkConfiguration, { status: "EgressDisabled" });
    assert.equal(p.customContainerTemplate, undefined);
    assert.equal(p.environmentId, undefined);
  });

  it("sends every flag family: container, registry password as a secret, env vars, lifecycle, scale, identities", async () => {
    const r = ok(
      await sp([
        "create",
        "-n",
        "pcustom",
        "-g",
        "rg1",
        "--location",
        "westeurope",
        "--container-type",
        "customcontainer",
        "--environment",
        "env1",
        "-i",
        "myacr.azurecr.io/app:v1",
        "--container-name",
        "app",
        "--cpu",
        "0.5",
        "--memory",
        "1Gi",
        "--command",
        "/bin/server",
        "--args",
        "--port",
        "8080",
        "--env-vars",
        "MODE=prod",
        "API_KEY=secretref:apikey",
        "-s",
        "apikey=s3cret",
        "other=x",
        "--target-port",
        "8080",
        "--registry-server",
        "myacr.azurecr.io",
        "--registry-username",
        "Robot.User",
        "--registry-password",
        "hunter2",
        "--lifecycle-type",
        "OnContainerExit",
        "--max-alive-period",
        "900",
        "--network-status",
        "EgressEnabled",
        "--max-sessions",
        "8",
        "--ready-sessions",
        "2",
        "--mi-system-assigned",
        "--mi-user-assigned",
        "uami1",
        "-o",
        "none",
      ]),
    );
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      /WARNING: Adding registry password as a secret with name "myacrazurecrio-robot-user"/,
    );
    const pool = await apiPool("pcustom");
    const p = pool.properties;
    assert.equal(pool.location, "westeurope");
    assert.equal(p.containerType, "CustomContainer");
    assert.equal(
      p.environmentId,
      `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/managedEnvironments/env1`,
    );
    assert.deepEqual(p.customContainerTemplate, {
      containers: [
        {
          image: "myacr.azurecr.io/app:v1",
          name: "app",
          command: ["/bin/server"],
          args: ["--port", "8080"],
          env: [
            { name: "MODE", value: "prod" },
            { name: "API_KEY", secretRef: "apikey" },
          ],
          resources: { cpu: 0.5, memory: "1Gi" },
        },
      ],
      ingress: { targetPort: 8080 },
      registryCredentials: {
        server: "myacr.azurecr.io",
        username: "Robot.User",
        passwordSecretRef: "myacrazurecrio-robot-user",
      },
    });
    assert.deepEqual(
      p.secrets.map((s: Json) => s.name),
      ["apikey", "other", "myacrazurecrio-robot-user"],
    );
    assert.deepEqual(p.dynamicPoolConfiguration.lifecycleConfiguration, {
      lifecycleType: "OnContainerExit",
      maxAlivePeriodInSeconds: 900,
    });
    assert.deepEqual(p.sessionNetworkConfiguration, { status: "EgressEnabled" });
    assert.deepEqual(p.scaleConfiguration, { maxConcurrentSessions: 8, readySessionInstances: 2 });
    const uami = `/subscriptions/${SUB}/resourcegroups/rg1/providers/microsoft.managedidentity/userassignedidentities/uami1`;
    assert.equal(pool.identity.type, "SystemAssigned,UserAssigned");
    assert.deepEqual(Object.keys(pool.identity.userAssignedIdentities), [uami]);
    assert.deepEqual(p.managedIdentitySettings, [
      { identity: "system", lifecycle: "Main" },
      { identity: uami, lifecycle: "Main" },
    ]);
  });

  it("with --no-wait prints the PUT answer and returns at once", async () => {
    const r = ok(await sp(["create", "-n", "pnowait", "-g", "rg2", "--max-sessions", "3", "--no-wait"]));
    const printed = JSON.parse(r.stdout) as Json;
    assert.equal(printed.name, "pnowait");
    // az sends ready 5; capped at --max-sessions so a small pool needs no second flag.
    assert.deepEqual(printed.properties.scaleConfiguration, {
      maxConcurrentSessions: 3,
      readySessionInstances: 3,
    });
  });
});

describe("sessionpool show and list", () => {
  it("show --query ... -o tsv prints the bare value", async () => {
    const r = ok(
      await sp([
        "show",
        "-n",
        "pdefault",
        "-g",
        "rg1",
        "--query",
        "properties.scaleConfiguration.maxConcurrentSessions",
        "-o",
        "tsv",
      ]),
    );
    assert.equal(r.stdout, "10\n");
  });

  it("show accepts --ids and other formats", async () => {
    const id = `/subscriptions/${SUB}/resourceGroups/rg1/providers/Microsoft.App/sessionPools/pdefault`;
    const [yaml, table] = await Promise.all([
      sp(["show", "--ids", id, "-o", "yaml"]),
      sp(["show", "--ids", id, "-o", "table"]),
    ]);
    assert.match(ok(yaml).stdout, /^name: pdefault$/m);
    assert.match(yaml.stdout, /^ {4}maxConcurrentSessions: 10$/m);
    assert.match(ok(table).stdout, /^pdefault\s+rg1\s+local\s+PythonLTS\s+Succeeded\s+10\s+5$/m);
  });

  it("list -o table shows a header, a rule and one row per pool", async () => {
    const r = ok(await sp(["list", "-o", "table"]));
    const lines = r.stdout.trimEnd().split("\n");
    assert.deepEqual(lines[0]!.split(/\s+/), [
      "Name",
      "ResourceGroup",
      "Location",
      "ContainerType",
      "ProvisioningState",
      "MaxSessions",
      "ReadySessions",
    ]);
    assert.match(lines[1]!, /^-+( {2}-+){6}$/);
    const rows = lines.slice(2).map((l) => l.split(/\s+/));
    assert.deepEqual(
      rows.find((row) => row[0] === "pdefault"),
      ["pdefault", "rg1", "local", "PythonLTS", "Succeeded", "10", "5"],
    );
    assert.deepEqual(rows.find((row) => row[0] === "pcustom")?.slice(0, 4), [
      "pcustom",
      "rg1",
      "westeurope",
      "CustomContainer",
    ]);
    assert.ok(rows.some((row) => row[0] === "pnowait" && row[1] === "rg2"));
  });

  it("list -g limits to the group; --query and tsv give names one per line", async () => {
    const r = ok(await sp(["list", "-g", "rg1", "--query", "[].name", "-o", "tsv"]));
    assert.deepEqual(r.stdout.trim().split("\n").sort(), ["pcustom", "pdefault"]);
  });
});

describe("sessionpool update", () => {
  it("reads the pool, then PATCHes only what changed", async () => {
    const r = ok(
      await sp([
        "update",
        "-n",
        "pdefault",
        "-g",
        "rg1",
        "--max-sessions",
        "20",
        "--cooldown-period",
        "600",
        "--debug",
      ]),
    );
    const calls = r.stderr.split("\n").filter((l) => l.startsWith("DEBUG: "));
    assert.match(
      calls[0]!,
      /^DEBUG: GET http:\/\/\S+\/sessionPools\/pdefault\?api-version=\S+ -> 200 \(\d+ ms\)$/,
    );
    assert.match(calls[1]!, /^DEBUG: PATCH http:\/\/\S+\/sessionPools\/pdefault\?\S+ -> 202 \(\d+ ms\)$/);
    assert.ok(!r.stderr.includes(server.token), "--debug must not print the token");
    assert.equal(JSON.parse(r.stdout).properties.scaleConfiguration.maxConcurrentSessions, 20);
    const p = (await apiPool("pdefault")).properties;
    assert.deepEqual(p.scaleConfiguration, { maxConcurrentSessions: 20, readySessionInstances: 5 });
    assert.deepEqual(p.dynamicPoolConfiguration.lifecycleConfiguration, {
      lifecycleType: "Timed",
      cooldownPeriodInSeconds: 600,
    });
  });

  it("edits a custom container in place and keeps its secrets", async () => {
    ok(
      await sp([
        "update",
        "-n",
        "pcustom",
        "-g",
        "rg1",
        "-i",
        "myacr.azurecr.io/app:v2",
        "--cpu",
        "1",
        "-o",
        "none",
      ]),
    );
    const p = (await apiPool("pcustom")).properties;
    const c = p.customContainerTemplate.containers[0];
    assert.equal(c.image, "myacr.azurecr.io/app:v2");
    assert.deepEqual(c.resources, { cpu: 1, memory: "1Gi" });
    assert.equal(c.env.length, 2);
    assert.equal(
      p.customContainerTemplate.registryCredentials.passwordSecretRef,
      "myacrazurecrio-robot-user",
    );
    assert.deepEqual(
      p.secrets.map((s: Json) => s.name),
      ["apikey", "other", "myacrazurecrio-robot-user"],
    );
  });

  it("refuses an update with nothing to change, and container flags on a PythonLTS pool", async () => {
    const [nothing, image] = await Promise.all([
      sp(["update", "-n", "pdefault", "-g", "rg1"]),
      sp(["update", "-n", "pdefault", "-g", "rg1", "--image", "x:1"]),
    ]);
    assert.equal(nothing.code, 2);
    assertOneErrorLine(nothing, /^ERROR: nothing to update/);
    assert.equal(image.code, 2);
    assertOneErrorLine(
      image,
      /^ERROR: --image applies only to CustomContainer pools; pdefault is PythonLTS\.$/,
    );
  });
});

describe("sessionpool delete", () => {
  it("refuses without --yes when input is not a terminal, deletes with it, and a second delete is fine", async () => {
    const refused = await sp(["delete", "-n", "pnowait", "-g", "rg2"]);
    assert.equal(refused.code, 2);
    assertOneErrorLine(refused, /^ERROR: deleting pnowait needs confirmation.*--yes/);
    await apiPool2("pnowait", 200);

    const deleted = ok(await sp(["delete", "-n", "pnowait", "-g", "rg2", "--yes"]));
    assert.equal(deleted.stdout, "");
    assert.match(deleted.stderr, /Session pool pnowait successfully deleted/);
    await apiPool2("pnowait", 404);
    ok(await sp(["delete", "-n", "pnowait", "-g", "rg2", "-y"]));
  });
});

async function apiPool2(name: string, status: number): Promise<void> {
  const r = await call("GET", poolUrl(server.url, name, "2025-07-01", "rg2"), { token: server.token });
  assert.equal(r.status, status, r.text);
}

describe("errors", () => {
  it("bad flags are usage errors (exit 2) with one clear line, before anything is sent", async () => {
    const cases: [string[], RegExp][] = [
      [["create", "-n", "pxx", "-g", "rg1", "--bogus"], /^ERROR: unknown option '--bogus'/],
      [
        ["create", "-n", "pxx", "-g", "rg1", "--max-sessions", "ten"],
        /--max-sessions <n>' argument 'ten' is invalid/,
      ],
      [
        ["create", "-n", "pxx", "-g", "rg1", "--network-status", "open"],
        /allowed values: EgressDisabled, EgressEnabled/,
      ],
      [["list", "-o", "xml"], /Allowed choices are json, jsonc, table, tsv, yaml, none/],
      [
        [
          "create",
          "-n",
          "pxx",
          "-g",
          "rg1",
          "--container-type",
          "CustomContainer",
          "-i",
          "a:1",
          "--target-port",
          "80",
          "--cooldown-period",
          "300",
          "--max-alive-period",
          "600",
        ],
        /^ERROR: --max-alive-period and --cooldown-period cannot be set at the same time\.$/,
      ],
      [
        ["create", "-n", "pxx", "-g", "rg1", "--environment", "env1"],
        /^ERROR: do not pass --environment when using container type PythonLTS\.$/,
      ],
      [
        ["create", "-n", "pxx", "-g", "rg1", "--container-type", "CustomContainer", "-i", "a:1"],
        /--target-port is required/,
      ],
      [
        ["create", "-n", "pxx", "-g", "rg1", "--max-alive-period", "600"],
        /PythonLTS does not support --max-alive-period/,
      ],
      [["create", "-n", "Bad-Name", "-g", "rg1"], /is not a valid session pool name/],
      [["show", "-n", "pdefault"], /required: --resource-group\/-g/],
      [
        [
          "show",
          "--ids",
          "/subscriptions/x/resourceGroups/y/providers/Microsoft.App/sessionPools/z",
          "-n",
          "z",
        ],
        /--ids cannot be combined/,
      ],
      [["show", "-n", "pdefault", "-g", "rg1", "--query", "properties.["], /^ERROR: --query: /],
    ];
    const runs = await Promise.all(cases.map(([args]) => sp(args)));
    runs.forEach((r, i) => {
      assert.equal(r.code, 2, `${cases[i]![0].join(" ")}: exit ${r.code}\n${r.stderr}`);
      assertOneErrorLine(r, cases[i]![1]);
    });
    // Nothing was created by the refused commands.
    const pxx = await call("GET", poolUrl(server.url, "pxx"), { token: server.token });
    assert.equal(pxx.status, 404);
  });

  it("server errors print (Code) message on one line with a non-zero status", async () => {
    const [tooMany, missing, badToken, badSub] = await Promise.all([
      sp(["create", "-n", "pbad", "-g", "rg1", "--max-sessions", "2", "--ready-sessions", "3"]),
      sp(["show", "-n", "nosuchpool", "-g", "rg1"]),
      sp(["list"], { env: { SESSIONPOOL_TOKEN: "not-the-token" } }),
      sp(["list", "--subscription", "not-a-guid"]),
    ]);
    assert.equal(tooMany.code, 1);
    assertOneErrorLine(
      tooMany,
      /^ERROR: \(SessionPoolInvalidReadySessionInstances\) 'properties\.scaleConfiguration\.readySessionInstances' \(3\) must not exceed maxConcurrentSessions \(2\)\.$/,
    );
    assert.equal(missing.code, 3);
    assertOneErrorLine(missing, /^ERROR: \(ResourceNotFound\) .*nosuchpool/);
    assert.equal(badToken.code, 4);
    assertOneErrorLine(badToken, /^ERROR: \(InvalidAuthenticationToken\) /);
    assert.equal(badSub.code, 1);
    assertOneErrorLine(badSub, /^ERROR: \(InvalidSubscriptionId\) /);
  });

  it("connection problems exit 4 and say what to do; --debug adds the stack", async () => {
    const [refused, nothing, debug] = await Promise.all([
      sp(["list"], { env: { SESSIONPOOL_ENDPOINT: "http://127.0.0.1:9" } }),
      sp(["list"], { env: { SESSIONPOOL_ENDPOINT: "", SESSIONPOOL_TOKEN: "" } }),
      sp(["list", "--debug"], { env: { SESSIONPOOL_ENDPOINT: "http://127.0.0.1:9" } }),
    ]);
    assert.equal(refused.code, 4);
    assertOneErrorLine(
      refused,
      /^ERROR: \(ConnectionRefused\) cannot connect to http:\/\/127\.0\.0\.1:9: connection refused/,
    );
    assert.equal(nothing.code, 4);
    assertOneErrorLine(nothing, /^ERROR: \(NotLoggedIn\) no server configured: set SESSIONPOOL_ENDPOINT/);
    assert.equal(debug.code, 4);
    assert.match(debug.stderr, /DEBUG: GET http:\/\/127\.0\.0\.1:9\/subscriptions\/.* -> failed/);
    assert.match(debug.stderr, /\n\s+at /);
  });
});

describe("login, configure and get-token", () => {
  it("login checks the credential, then saves a 0600 profile that later commands use", async () => {
    const home = tempDir("sessionpool-cli-login-");
    try {
      const noEnv = cliRunner({ configDir: join(home, "cfg") });
      const wrong = await noEnv(["login", "--endpoint", server.url, "--token", "wrong-token"]);
      assert.equal(wrong.code, 4);
      assertOneErrorLine(wrong, /InvalidAuthenticationToken/);
      assert.ok(!existsSync(join(home, "cfg", "config.json")), "a refused credential is not saved");

      const tokenFile = join(home, "admin-token");
      writeFileSync(tokenFile, `${server.token}\n`);
      const r = ok(await noEnv(["login", "--endpoint", `${server.url}/`, "--token-file", tokenFile]));
      const summary = JSON.parse(r.stdout) as Json;
      assert.equal(summary.endpoint, server.url);
      assert.ok(!r.stdout.includes(server.token));
      const file = join(home, "cfg", "config.json");
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(join(home, "cfg")).mode & 0o777, 0o700);
      assert.equal(JSON.parse(readFileSync(file, "utf8")).token, server.token);

      ok(await noEnv(["configure", "--defaults", "group=rg1", "location=northeurope"]));
      const shown = ok(await noEnv(["show", "-n", "pdefault", "--query", "name", "-o", "tsv"]));
      assert.equal(shown.stdout, "pdefault\n");
      const defaults = ok(
        await noEnv(["configure", "--list-defaults", "--query", "[].[name,value]", "-o", "tsv"]),
      );
      assert.equal(defaults.stdout, "group\trg1\nlocation\tnortheurope\n");

      // The saved credential belongs to the saved server: it is not sent to another one.
      const elsewhere = await noEnv(["list"], { env: { SESSIONPOOL_ENDPOINT: "http://127.0.0.1:9" } });
      assert.equal(elsewhere.code, 4);
      assertOneErrorLine(elsewhere, /no credential for http:\/\/127\.0\.0\.1:9/);

      ok(await noEnv(["logout"]));
      assert.equal(JSON.parse(readFileSync(file, "utf8")).token, undefined);
      assert.equal((await noEnv(["list"])).code, 4);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it("trusts a self-signed server only through --ca-file / SESSIONPOOL_CA_FILE", async () => {
    const tls = await startTestServer({ tls: "self-signed" });
    const home = tempDir("sessionpool-cli-tls-");
    try {
      assert.match(tls.url, /^https:/);
      const run = cliRunner({ configDir: join(home, "cfg") });
      const untrusted = await run(["list"], {
        env: { SESSIONPOOL_ENDPOINT: tls.url, SESSIONPOOL_TOKEN: tls.token },
      });
      assert.equal(untrusted.code, 4);
      assertOneErrorLine(untrusted, /^ERROR: \(CertificateNotTrusted\) .*--ca-file/);
      const caPath = tls.server.caPath!;
      const viaEnv = await run(["list", "-o", "tsv"], {
        env: { SESSIONPOOL_ENDPOINT: tls.url, SESSIONPOOL_TOKEN: tls.token, SESSIONPOOL_CA_FILE: caPath },
      });
      assert.equal(ok(viaEnv).stdout, "");
      ok(
        await run(["login", "--endpoint", tls.url, "--token", tls.token, "--ca-file", caPath, "-o", "none"]),
      );
      ok(await run(["create", "-n", "ptls", "-g", "rg1", "-o", "none"]));
      assert.equal(ok(await run(["list", "--query", "[].name", "-o", "tsv"])).stdout, "ptls\n");
    } finally {
      await tls.close();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it("get-token prints the token alone; -o json gives the whole answer", async () => {
    const [plain, json] = await Promise.all([
      sp(["get-token", "-n", "pdefault", "-g", "rg1"]),
      sp(["get-token", "-n", "pdefault", "-g", "rg1", "-o", "json"]),
    ]);
    const token = ok(plain).stdout.trim();
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.equal(plain.stdout, `${token}\n`);
    const body = JSON.parse(ok(json).stdout) as Json;
    assert.equal(body.type, "Microsoft.App/sessionPools/accesstoken");
    assert.ok(Date.parse(body.properties.expires) > Date.now());
    assert.equal(typeof body.properties.token, "string");
  });
});

describe("help and layering", () => {
  it("every command's help has examples", () => {
    let text = "";
    const program = buildProgram({
      env: {},
      terminal: { stdinIsTTY: false, stderrIsTTY: false },
      stdout: (d) => {
        text += d.toString();
      },
      stderr: () => {},
    });
    const leaves: string[] = [];
    const walk = (cmd: typeof program, path: string[]) => {
      for (const sub of cmd.commands) {
        const here = [...path, sub.name()];
        if (sub.commands.length > 0) walk(sub, here);
        else if (sub.name() !== "serve") {
          text = "";
          sub.outputHelp();
          assert.match(
            text,
            /\nExamples:\n {2}\S.*\n {4}\$ .*sessionpool /,
            `${here.join(" ")} --help has no examples`,
          );
          assert.match(text, /Global Options:/);
          leaves.push(here.join(" "));
        }
      }
    };
    walk(program, []);
    for (const expected of [
      "create",
      "update",
      "show",
      "list",
      "delete",
      "get-token",
      "session code-interpreter execute",
      "session code-interpreter upload-file",
      "session code-interpreter list-files",
      "session code-interpreter show-file-content",
      "session code-interpreter show-file-metadata",
      "session code-interpreter delete-file",
      "session stop",
      "session list",
      "session show",
      "session delete",
      "login",
      "configure",
    ]) {
      assert.ok(leaves.includes(expected), `missing command ${expected}`);
    }
  });

  it("--help exits 0; no command exits 2 with usage", async () => {
    const [help, none] = await Promise.all([sp(["update", "--help"]), sp([])]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: sessionpool update \[options\]/);
    assert.match(help.stdout, /--cooldown-period <seconds>/);
    assert.equal(none.code, 2);
    assert.match(none.stdout, /^Usage: sessionpool/);
  });

  it("the CLI reaches the server over HTTP only: no imports of server layers", () => {
    const dir = join(ROOT, "src/cli");
    const files = readdirSync(dir, { recursive: true, encoding: "utf8" }).filter(
      (f) => f.endsWith(".ts") && f !== "serve.ts",
    );
    assert.ok(files.length > 5);
    for (const f of files) {
      const src = readFileSync(join(dir, f), "utf8");
      const bad =
        /from\s+["'](\.\.\/)+((core|http|store|runtime|auth|agents)\/|(server|runtime-wiring)\.ts)/.exec(src);
      assert.equal(bad, null, `src/cli/${f} imports ${bad?.[0]}`);
    }
  });
});
