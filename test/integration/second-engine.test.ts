// The second Docker engine the fleet tests run (scripts/second-engine.sh, test/helpers/second-engine.ts): a real
// `sessionpool serve` pointed at it with DOCKER_HOST runs its sandboxes there, under gVisor when the engine has
// it, and none in the machine's first engine; afterwards nothing is left and the engine is stopped again.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { armPoolUrl, TEST_RUNTIME } from "../helpers/runtime.ts";
import {
  pythonImageRef,
  SECOND_ENGINE_LACKS,
  type SecondEngine,
  secondEngineAvailable,
  startSecondEngine,
} from "../helpers/second-engine.ts";
import {
  type ChildServer,
  call,
  ROOT,
  SUB,
  spawnServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";

const run = promisify(execFile);
const FIRST_ENGINE = process.env["DOCKER_HOST"] ?? "unix:///var/run/docker.sock";
const RG = `engine2${process.pid}`;
const POOL = "engine2";
const POOL_LABEL = `io.sessionpool.pool=${`${SUB}/${RG}/${POOL}`.toLowerCase()}`;

async function docker(host: string, args: string[]): Promise<string> {
  const { stdout } = await run("docker", ["-H", host, ...args], { timeout: 60_000 });
  return stdout.trim();
}

/** Container ids (any state) carrying `label` in the engine at `host`. */
async function containers(host: string, label: string): Promise<string[]> {
  const out = await docker(host, ["ps", "-aq", "--no-trunc", "--filter", `label=${label}`]);
  return out.split("\n").filter((l) => l !== "");
}

async function engineRuntimes(host: string): Promise<string[]> {
  return (await docker(host, ["info", "--format", "{{range $n, $_ := .Runtimes}}{{$n}} {{end}}"]))
    .split(" ")
    .filter((r) => r !== "");
}

/** The first engine's default bridge as the host has it: its interface and address ("" when there is none). */
async function firstEngineBridge(): Promise<string> {
  const name = (
    await run("docker", [
      "network",
      "inspect",
      "bridge",
      "--format",
      '{{index .Options "com.docker.network.bridge.name"}}',
    ])
  ).stdout.trim();
  return run("ip", ["-4", "-o", "addr", "show", "dev", name]).then(
    (r) => r.stdout.trim().split(/\s+/).slice(1, 4).join(" "),
    () => "",
  );
}

describe("a second Docker engine on this host", {
  skip: secondEngineAvailable() ? false : SECOND_ENGINE_LACKS,
}, () => {
  const dataDir = tempDir("sessionpool-engine2-");
  let engine: SecondEngine | undefined;
  let server: ChildServer | undefined;
  let bridgeBefore = "";

  before(async () => {
    const image = await pythonImageRef();
    bridgeBefore = await firstEngineBridge();
    engine = await startSecondEngine([image]);
    server = await spawnServer(
      ["--python-image", image, "--sandbox-runtime", TEST_RUNTIME],
      { DOCKER_HOST: engine.dockerHost },
      dataDir,
    );
  });

  after(async () => {
    try {
      if (server && server.child.exitCode === null) {
        const del = await call("DELETE", armPoolUrl(server.url, POOL, RG)).catch(() => undefined);
        if (del?.status === 202) await waitForOperation(del.headers["azure-asyncoperation"]!).catch(() => {});
        await server.stop();
      }
    } finally {
      // Whatever a failed test left, in either engine: by label, never by name.
      for (const host of [engine?.dockerHost, FIRST_ENGINE]) {
        if (host === undefined) continue;
        const ids = await containers(host, POOL_LABEL).catch(() => []);
        if (ids.length > 0) await docker(host, ["rm", "-f", ...ids]).catch(() => {});
      }
      await engine?.stop().catch((err: unknown) => console.error(err));
      await run("rm", ["-rf", dataDir]).catch(() => {});
    }
  });

  it("leaves the first engine's default bridge as it was", async () => {
    // A dockerd started with `--bridge none` deletes the host's docker0, the first engine's default bridge.
    assert.notEqual(bridgeBefore, "", "the first engine has a default bridge");
    assert.equal(await firstEngineBridge(), bridgeBefore);
  });

  it("runs a server's sandboxes in the second engine and none in the first", async () => {
    const put = await call("PUT", armPoolUrl(server!.url, POOL, RG), {
      body: {
        location: "eastus",
        properties: {
          containerType: "PythonLTS",
          scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
        },
      },
    });
    assert.equal(put.status, 201, put.text);
    const done = await waitForOperation(put.headers["azure-asyncoperation"]!);
    assert.equal(done["status"], "Succeeded", JSON.stringify(done));

    const endpoint = `${server!.url}/subscriptions/${SUB}/resourceGroups/${RG}/sessionPools/${POOL}`;
    const r = await call(
      "POST",
      `${endpoint}/executions?api-version=2025-10-02-preview&identifier=two-engines`,
      {
        body: { code: "1+1", timeoutInSeconds: 60 },
      },
    );
    assert.equal(r.status, 200, r.text);
    const result = r.body as { status: string; result: { executionResult: unknown } };
    assert.equal(result.status, "Succeeded", r.text);
    assert.equal(result.result.executionResult, 2);

    // The session's sandbox (x-ms-session-guid is the start of its container id) is in the second engine ...
    const guid = r.headers["x-ms-session-guid"];
    assert.ok(guid, "x-ms-session-guid header");
    const inSecond = await containers(engine!.dockerHost, POOL_LABEL);
    const sandbox = inSecond.find((id) => id.startsWith(guid));
    assert.ok(sandbox, `the session's sandbox ${guid} among the second engine's ${inSecond.join(", ")}`);
    const [state, instance, runtime] = (
      await docker(engine!.dockerHost, [
        "inspect",
        "--format",
        '{{.State.Status}}|{{index .Config.Labels "io.sessionpool.instance"}}|{{.HostConfig.Runtime}}',
        sandbox,
      ])
    ).split("|");
    assert.equal(state, "running");
    assert.ok(instance, "the sandbox carries the server's instance label");

    // ... and nothing of this server is in the first engine: not the session's container, nor anything with its
    // instance label or its pool label.
    await assert.rejects(docker(FIRST_ENGINE, ["inspect", sandbox]), /No such object/i);
    assert.deepEqual(await containers(FIRST_ENGINE, `io.sessionpool.instance=${instance}`), []);
    assert.deepEqual(await containers(FIRST_ENGINE, POOL_LABEL), []);

    // gVisor when registered: the second engine has it whenever the first does (its runtimes are copied from the
    // first engine's daemon.json), and the server picks it there as it does on the first.
    const firstHasGvisor = (await engineRuntimes(FIRST_ENGINE)).includes("runsc");
    if (firstHasGvisor)
      assert.ok((await engineRuntimes(engine!.dockerHost)).includes("runsc"), "runsc in engine 2");
    const expected = TEST_RUNTIME === "auto" ? (firstHasGvisor ? "runsc" : "runc") : TEST_RUNTIME;
    assert.equal(runtime, expected);
    const health = await call("GET", `${server!.url}/healthz`);
    assert.equal((health.body as { sandboxRuntime?: string }).sandboxRuntime, expected);
  });

  it("deleting the pool removes its sandboxes, and stop() stops the engine it started", async () => {
    const del = await call("DELETE", armPoolUrl(server!.url, POOL, RG));
    assert.equal(del.status, 202, del.text);
    const done = await waitForOperation(del.headers["azure-asyncoperation"]!);
    assert.equal(done["status"], "Succeeded", JSON.stringify(done));
    assert.deepEqual(await containers(engine!.dockerHost, POOL_LABEL), []);
    assert.equal(await server!.stop(), 0);

    await engine!.stop();
    const status = await run("bash", [join(ROOT, "scripts/second-engine.sh"), "status"], {
      timeout: 30_000,
    }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (err: { code?: number; stdout?: string }) => ({ code: err.code, out: err.stdout ?? "" }),
    );
    // An engine that was running before this file started is left running: the helper did not start it.
    if (engine!.started) assert.deepEqual(status, { code: 3, out: "not running\n" });
    else assert.match(status.out, /^running/);
    // The first engine never noticed.
    assert.match(await docker(FIRST_ENGINE, ["version", "--format", "{{.Server.Version}}"]), /\d/);
  });
});
