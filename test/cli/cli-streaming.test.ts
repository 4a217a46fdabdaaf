// `session code-interpreter execute` on a terminal prints the output as the code produces it (docs/streaming.md);
// in a pipe it prints the execution's JSON as before. Real server, real engine, the CLI on a pseudo-terminal.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { multipartFile, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call, ROOT, SUB, tempDir } from "../helpers/server.ts";
import { cliEnv, cliRunner, hasScript } from "./cli-helpers.ts";

const POOL = "clistream";

let fx: RuntimeFixture;
let dir: string;
let rg: string;

before(async () => {
  fx = await startRuntimeServer();
  rg = fx.endpoint(POOL).split("/resourceGroups/")[1]!.split("/")[0]!;
  dir = tempDir("sessionpool-cli-stream-");
  const op = await fx.createPool(POOL, {
    scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
  });
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  await fx?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const env = () =>
  cliEnv(
    { url: fx.url, token: fx.server.token, configDir: join(dir, "cfg") },
    { SESSIONPOOL_SUBSCRIPTION: SUB },
  );

/** `sessionpool args` on a pseudo-terminal; `onOutput` sees all it has printed so far, each time more comes. */
function runOnTerminal(
  args: string[],
  onOutput: (soFar: string) => void,
): Promise<{ code: number | null; out: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const line = [join(ROOT, "bin/sessionpool"), ...args].map(quote).join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qec", line, "/dev/null"], {
      env: env(),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    const take = (d: Buffer) => {
      out += d.toString("utf8");
      onOutput(out);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    child.stdin.end();
  });
}

describe("session code-interpreter execute, streamed", () => {
  it("on a terminal, prints output while the code runs, then the value", {
    skip: !hasScript() && "lacks: util-linux script (a terminal for the CLI)",
  }, async () => {
    let uploaded: Promise<unknown> | undefined;
    // The code waits for a file the test uploads only once "first" is on the terminal.
    const code =
      "import os, sys, time\nprint('first')\nwhile not os.path.exists('/mnt/data/go-cli'):\n  time.sleep(0.01)\n" +
      "print('second')\nsys.stderr.write('warned\\n')\n6 * 7";
    const run = await runOnTerminal(
      ["session", "code-interpreter", "execute", "-n", POOL, "-g", rg, "-i", "cli-1", "--code", code],
      (soFar) => {
        if (uploaded === undefined && soFar.includes("first\r\n")) {
          const { body, contentType } = multipartFile("go-cli", "go");
          uploaded = call(
            "POST",
            `${fx.endpoint(POOL)}/files?api-version=2025-10-02-preview&identifier=cli-1`,
            {
              raw: body,
              headers: { "content-type": contentType },
            },
          );
        }
      },
    );
    assert.ok(uploaded, "the first line was shown while the code was waiting");
    assert.equal(((await uploaded) as { status: number }).status, 200);
    assert.equal(run.code, 0, run.out);
    assert.equal(run.out, "first\r\nsecond\r\nwarned\r\n42\r\n");
  });

  it("in a pipe, prints the execution's JSON as before", async () => {
    const sp = cliRunner({ url: fx.url, token: fx.server.token, configDir: join(dir, "cfg") });
    const r = await sp(
      [
        "session",
        "code-interpreter",
        "execute",
        "-n",
        POOL,
        "-g",
        rg,
        "-i",
        "cli-1",
        "--code",
        "print(1)\n2",
      ],
      { env: { SESSIONPOOL_SUBSCRIPTION: SUB } },
    );
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as {
      status: string;
      result: { stdout: string; executionResult: unknown };
    };
    assert.equal(body.status, "Succeeded");
    assert.equal(body.result.stdout, "1\n");
    assert.equal(body.result.executionResult, 2);
  });
});
