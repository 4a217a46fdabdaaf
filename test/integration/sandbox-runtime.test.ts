// Sandboxes under gVisor on the real engine: what `--sandbox-runtime auto` settles on, what each pool type runs
// under and sees from inside, and a runtime the engine lacks stopping the start in one line.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { type RuntimeFixture, startRuntimeServer, TIGHT_SANDBOX } from "../helpers/runtime.ts";
import { call, runCli, spawnServer, tempDir } from "../helpers/server.ts";

const run = promisify(execFile);
const RG = `rt${Math.random().toString(36).slice(2, 8)}`;

async function engineRuntimes(): Promise<string[]> {
  const { stdout } = await run("docker", ["info", "--format", "{{range $n, $_ := .Runtimes}}{{$n}} {{end}}"]);
  return stdout.trim().split(/\s+/);
}

/** Why this machine cannot run these tests, or undefined. On CI the set-up registers gVisor: its absence fails. */
async function gvisorMissing(): Promise<string | undefined> {
  const runtimes = await engineRuntimes();
  if (runtimes.includes("runsc") && runtimes.includes("runsc-net")) return undefined;
  const why = `lacks: gVisor registered with the engine: the Docker engine has no runsc/runsc-net runtimes (it has ${runtimes.join(", ")}); scripts/setup.sh registers them`;
  if (process.env["CI"] === "true") throw new Error(why);
  return why;
}

async function inspect(id: string): Promise<{ runtime: string; labels: Record<string, string> }> {
  const { stdout } = await run("docker", ["inspect", "--format", "{{json .}}", id]);
  const c = JSON.parse(stdout) as {
    HostConfig: { Runtime: string };
    Config: { Labels: Record<string, string> };
  };
  return { runtime: c.HostConfig.Runtime, labels: c.Config.Labels };
}

const missing = await gvisorMissing();

describe("sandboxes under gVisor", { skip: missing }, () => {
  let fx: RuntimeFixture;
  const hostKernel = readFileSync("/proc/version", "utf8").trim();

  before(async () => {
    // "auto", whatever SESSIONPOOL_TEST_RUNTIME says for the other suites: this one is about the default.
    fx = await startRuntimeServer({ rg: RG, sandbox: { ...TIGHT_SANDBOX, runtime: "auto" } });
  });
  after(async () => {
    await fx?.close();
  });

  it("auto picks gVisor, and /healthz and /metrics say so", async () => {
    assert.equal(fx.sandboxRuntime, "runsc");
    const metrics = await call("GET", `${fx.url}/metrics`);
    assert.match(metrics.text, /^sessionpool_sandbox_runtime\{runtime="runsc"\} 1$/m);
  });

  for (const [type, code, release] of [
    ["PythonLTS", "open('/proc/version').read()", (r: unknown) => String(r)],
    ["NodeLTS", "require('fs').readFileSync('/proc/version', 'utf8')", (r: unknown) => String(r)],
  ] as const) {
    it(`${type} sessions run under runsc and see gVisor's kernel, not the host's`, async () => {
      const pool = type.toLowerCase();
      await fx.createPool(pool, {
        containerType: type,
        scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
      });
      const r = await fx.exec(pool, "kernel-probe", code);
      assert.equal(r.status, 200, r.text);
      const seen = release(
        (r.body as { result: { executionResult: unknown } }).result.executionResult,
      ).trim();
      assert.notEqual(seen, hostKernel);
      assert.match(seen, /^Linux version 4\.4\.0/, "gVisor reports its own kernel version");
      const [id] = await fx.containers(pool);
      const info = await inspect(id!);
      assert.equal(info.runtime, "runsc");
      assert.equal(info.labels["io.sessionpool.runtime"], "runsc");
    });
  }

  it("Shell sessions run under runsc", async () => {
    await fx.createPool("shellpool", {
      containerType: "Shell",
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
    });
    const r = await call(
      "POST",
      `${fx.endpoint("shellpool")}/executions?api-version=2025-10-02-preview&identifier=shell-probe`,
      { body: { shellCommand: "cat /proc/version", timeoutInSeconds: 60 } },
    );
    assert.equal(r.status, 200, r.text);
    const stdout = (r.body as { result: { stdout: string } }).result.stdout.trim();
    assert.match(stdout, /^Linux version 4\.4\.0/);
    assert.notEqual(stdout, hostKernel);
  });

  it("EgressEnabled sessions run under runsc-net with an interface of their own", async () => {
    await fx.createPool("egresspool", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 1 },
      sessionNetworkConfiguration: { status: "EgressEnabled" },
    });
    const r = await fx.exec(
      "egresspool",
      "egress-probe",
      "import os\nsorted(os.listdir('/sys/class/net')), open('/proc/version').read()",
    );
    assert.equal(r.status, 200, r.text);
    const result = String((r.body as { result: { executionResult: unknown } }).result.executionResult);
    assert.match(result, /'eth0'/);
    assert.match(result, /Linux version 4\.4\.0/);
    const [id] = await fx.containers("egresspool");
    assert.equal((await inspect(id!)).runtime, "runsc-net");
  });
});

describe("--sandbox-runtime", () => {
  it("stops the start in one line when the engine lacks the runtime", async () => {
    const dataDir = tempDir();
    const { code, output } = await runCli(
      ["serve", "--port", "0", "--data-dir", dataDir, "--sandbox-runtime", "no-such-runtime"],
      {},
      60_000,
    );
    assert.equal(code, 1, output);
    assert.match(
      output,
      /sessionpool: --sandbox-runtime no-such-runtime: the engine has no runtime of that name/,
    );
  });

  it("serve says which runtime sandboxes use", { skip: missing }, async () => {
    const server = await spawnServer([]);
    try {
      assert.match(server.output(), /Sandboxes run under gVisor \(runsc\)/);
    } finally {
      await server.stop();
    }
  });
});
