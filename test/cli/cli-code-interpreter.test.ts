// The session commands as a user runs them against a server with the real Docker runtime: run code, move a
// file in and out of a session, manage sessions, and use a data-plane token from get-token.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { dockerBackend } from "../../src/backend-wiring.ts";
import { startTestServer, type TestServer, tempDir } from "../helpers/server.ts";
import { type CliRun, cliEnv, cliRunner, hasScript, runInTerminal } from "./cli-helpers.ts";

const POOL = `cli${process.pid}`;
const RG = "clirg";

function dockerAvailable(): boolean {
  try {
    execFileSync("docker", ["image", "inspect", "sessionpool/python:latest"], {
      stdio: "ignore",
      timeout: 20_000,
    });
    return true;
  } catch {
    return false;
  }
}

function ok(r: CliRun): CliRun {
  assert.equal(r.code, 0, `exit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`);
  return r;
}

describe("sessionpool session (Docker runtime)", {
  skip: !dockerAvailable() && "lacks: a Docker engine with the sessionpool/python image",
}, () => {
  let server: TestServer;
  let dir: string;
  let sp: ReturnType<typeof cliRunner>;
  const pool = ["-n", POOL, "-g", RG];
  const ci = (command: string, ...args: string[]) =>
    sp(["session", "code-interpreter", command, ...pool, "-i", "user-1", ...args]);

  before(async () => {
    server = await startTestServer({ backend: dockerBackend({ reapIntervalMs: 200 }) });
    dir = tempDir("sessionpool-cli-ci-");
    sp = cliRunner({ url: server.url, token: server.token, configDir: join(dir, "cfg") });
    const created = ok(
      await sp(["create", ...pool, "--ready-sessions", "1", "--max-sessions", "2", "-o", "table"]),
    );
    assert.match(
      created.stdout,
      new RegExp(`^${POOL}\\s+${RG}\\s+local\\s+PythonLTS\\s+Succeeded\\s+2\\s+1$`, "m"),
    );
  });

  after(async () => {
    // The pool goes whatever happened, so no sandbox outlives the test.
    try {
      if (sp) {
        const runs = await Promise.all([
          sp(["delete", ...pool, "--yes"]),
          sp(["delete", "-n", `${POOL}tty`, "-g", RG, "--yes"]),
        ]);
        runs.forEach(ok);
      }
    } finally {
      await server?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it("execute runs code in a session and prints the execution", async () => {
    const r = ok(await ci("execute", "--code", "print(1+1)"));
    const body = JSON.parse(r.stdout);
    assert.equal(body.status, "Succeeded");
    assert.equal(body.identifier, "user-1");
    assert.equal(body.result.stdout, "2\n");
  });

  it("upload-file puts a local file in /mnt/data where code can read it; list, show and delete it", async () => {
    const local = join(dir, "x.txt");
    writeFileSync(local, "hello from the CLI\n");
    const uploaded = JSON.parse(ok(await ci("upload-file", "--filepath", local)).stdout);
    assert.equal(uploaded.name, "x.txt");
    assert.equal(uploaded.sizeInBytes, 19);

    const read = ok(
      await ci(
        "execute",
        "--code",
        "open('/mnt/data/x.txt').read()",
        "--query",
        "result.executionResult",
        "-o",
        "tsv",
      ),
    );
    assert.equal(read.stdout, "hello from the CLI\n\n");

    const [listed, content, meta] = await Promise.all([
      ci("list-files", "-o", "table"),
      ci("show-file-content", "--filename", "x.txt"),
      ci("show-file-metadata", "--filename", "x.txt"),
    ]);
    const rows = ok(listed).stdout.trimEnd().split("\n");
    assert.deepEqual(rows[0]!.split(/\s+/), ["Name", "Type", "SizeInBytes", "LastModifiedAt", "Directory"]);
    assert.match(rows[2]!, /^x\.txt\s+file\s+19\s+\d{4}-\d\d-\d\dT/);
    assert.equal(ok(content).stdout, "hello from the CLI\n");
    const m = JSON.parse(ok(meta).stdout);
    assert.equal(m.name, "x.txt");
    assert.equal(m.sizeInBytes, 19);

    const deleted = ok(await ci("delete-file", "--filename", "x.txt"));
    assert.match(deleted.stderr, /File x\.txt successfully deleted/);
    const after = JSON.parse(ok(await ci("list-files")).stdout);
    assert.deepEqual(after.value, []);
    const gone = await ci("show-file-metadata", "--filename", "x.txt");
    assert.equal(gone.code, 3, gone.stderr);
    assert.match(gone.stderr, /^ERROR: \(\w+\) /);
  });

  it("session list, show, stop; a data-plane token from get-token works for session commands", async () => {
    const listed = ok(await sp(["session", "list", ...pool, "--query", "[].identifier", "-o", "tsv"]));
    assert.equal(listed.stdout, "user-1\n");
    const shown = JSON.parse(ok(await sp(["session", "show", ...pool, "-i", "user-1"])).stdout);
    assert.equal(shown.identifier, "user-1");
    assert.ok(Date.parse(shown.expireAt) > Date.now());

    const token = ok(await sp(["get-token", ...pool])).stdout.trim();
    const withToken = cliRunner({ url: server.url, token, configDir: join(dir, "cfg") });
    const run = ok(
      await withToken([
        "session",
        "code-interpreter",
        "execute",
        ...pool,
        "-i",
        "user-2",
        "--code",
        "print('token')",
        "--query",
        "result.stdout",
        "-o",
        "tsv",
      ]),
    );
    assert.equal(run.stdout, "token\n\n");
    const denied = await withToken(["show", ...pool]);
    assert.equal(denied.code, 4);
    assert.match(denied.stderr, /^ERROR: \(AuthorizationFailed\) /);

    const stopped = ok(await sp(["session", "stop", ...pool, "-i", "user-1"]));
    assert.equal(stopped.stdout, `Session user-1 in session pool ${POOL} stopped.\n`);
    const missing = await sp(["session", "show", ...pool, "-i", "user-1"]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /^ERROR: \(SessionNotFound\) /);
    ok(await sp(["session", "delete", ...pool, "-i", "user-2"]));
  });

  it("on a terminal, create shows progress and delete asks first", {
    skip: !hasScript() && "lacks: util-linux script (a terminal for the CLI)",
  }, async () => {
    const env = cliEnv({ url: server.url, token: server.token, configDir: join(dir, "cfg") });
    const name = `${POOL}tty`;
    const created = await runInTerminal(
      ["create", "-n", name, "-g", RG, "--max-sessions", "1", "-o", "none"],
      env,
    );
    assert.equal(created.code, 0, created.stdout);
    assert.match(
      created.stdout,
      new RegExp(`\\r\\x1b\\[2KProvisioning ${name}: InProgress, \\d+ s, ready sessions \\d/1`),
    );
    assert.ok(created.stdout.endsWith("\r\x1b[2K"), "the progress line is cleared at the end");

    const kept = await runInTerminal(["delete", "-n", name, "-g", RG], env, "n\n");
    assert.equal(kept.code, 2, kept.stdout);
    assert.match(kept.stdout, /Are you sure you want to perform this operation\? \(y\/n\): /);
    assert.match(kept.stdout, /ERROR: delete cancelled\./);
    const deleted = await runInTerminal(["delete", "-n", name, "-g", RG], env, "y\n");
    assert.equal(deleted.code, 0, deleted.stdout);
    assert.match(deleted.stdout, new RegExp(`Session pool ${name} successfully deleted`));
  });

  it("a provisioning failure ends create with the operation's error and exit status 1", async () => {
    const name = `${POOL}bad`;
    try {
      // Nothing listens on port 1: the pull fails at once, on loopback.
      const r = await sp([
        "create",
        "-n",
        name,
        "-g",
        RG,
        "--container-type",
        "CustomContainer",
        "-i",
        "127.0.0.1:1/nope:1",
        "--target-port",
        "80",
        "--max-sessions",
        "2", // a custom pool needs room for one session beyond its warm one
      ]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^ERROR: \(\w+\) .*127\.0\.0\.1:1\/nope:1.*\n$/);
      const state = ok(
        await sp(["show", "-n", name, "-g", RG, "--query", "properties.provisioningState", "-o", "tsv"]),
      );
      assert.equal(state.stdout, "Failed\n");
    } finally {
      ok(await sp(["delete", "-n", name, "-g", RG, "--yes"]));
    }
  });
});
