// kill -9 of the server (a real `sessionpool serve` child on the real engine) in the middle of a pool's PUT
// operation, of claims, of an execution and of a file upload; then a restart on the same data dir. Afterwards
// operations are terminal, every session that was answered is still there with its state, no identifier has two
// sandboxes, no sandbox runs without a session record (no orphans), and the pool is back at its warm size.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { request as httpRequest } from "node:http";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { armPoolUrl, dockerIds, metric, until } from "../helpers/runtime.ts";
import {
  ADMIN_TOKEN,
  type ChildServer,
  call,
  type Reply,
  SUB,
  spawnServer,
  tempDir,
  waitForOperation,
} from "../helpers/server.ts";

const run = promisify(execFile);
const RG = `crash${process.pid}`;
const POOL = "crash";
const READY = 2;
const API = "api-version=2025-10-02-preview";
const POOL_LABEL = `io.sessionpool.pool=${`${SUB}/${RG}/${POOL}`.toLowerCase()}`;

const dataDir = tempDir("sessionpool-crash-");
let server: ChildServer | undefined;

after(async () => {
  try {
    if (server && server.child.exitCode === null) {
      const del = await call("DELETE", armPoolUrl(server.url, POOL, RG));
      if (del.status === 202) await waitForOperation(del.headers["azure-asyncoperation"]!);
      await server.stop();
    }
  } finally {
    const ids = await dockerIds(POOL_LABEL).catch(() => []);
    if (ids.length > 0) await run("docker", ["rm", "-f", ...ids]).catch(() => {});
    await run("rm", ["-rf", dataDir]).catch(() => {});
  }
});

const endpoint = () => `${server!.url}/subscriptions/${SUB}/resourceGroups/${RG}/sessionPools/${POOL}`;
const at = (path: string, identifier: string) =>
  `${endpoint()}${path}?${API}&identifier=${encodeURIComponent(identifier)}`;

function exec(identifier: string, code: string): Promise<Reply> {
  return call("POST", at("/executions", identifier), { body: { code, timeoutInSeconds: 60 } });
}

const resultOf = (r: Reply) => (r.body as { result?: { executionResult?: unknown } }).result?.executionResult;

async function start(): Promise<void> {
  server = await spawnServer([], {}, dataDir);
}

/** SIGKILL: no shutdown code runs at all. */
async function crash(): Promise<void> {
  await server!.kill();
}

async function identifiers(): Promise<string[]> {
  const r = await call("GET", `${endpoint()}/listSessions?${API}`);
  assert.equal(r.status, 200, r.text);
  return (r.body as { sessions: { identifier: string }[] }).sessions.map((s) => s.identifier).sort();
}

/**
 * The invariants after a restart: the pool is warm again, and the engine runs exactly one sandbox per session
 * the server knows (allocated + ready), all running: nothing duplicated, nothing orphaned.
 */
async function assertConsistent(): Promise<void> {
  const gauge = (name: string) => metric(server!.url, name, `/${POOL}"`);
  try {
    await until(
      "the pool to be warm and settled",
      async () =>
        (await gauge("sessionpool_pool_ready_sessions")) === READY &&
        (await gauge("sessionpool_pool_pending_sessions")) === 0,
      120_000,
    );
  } catch (err) {
    const ready = await gauge("sessionpool_pool_ready_sessions");
    const pending = await gauge("sessionpool_pool_pending_sessions");
    throw new Error(
      `${(err as Error).message}: ready ${ready}, pending ${pending}; server log:\n${server!.output().slice(-4000)}`,
    );
  }
  const allocated = (await identifiers()).length;
  assert.equal(await gauge("sessionpool_pool_allocated_sessions"), allocated);
  // Removal of the orphans runs before serving, so the engine's view is final here.
  const all = await dockerIds(POOL_LABEL);
  const running = await dockerIds(POOL_LABEL, "running");
  assert.deepEqual(running.sort(), all.sort(), "no stopped sandbox of the pool is left in the engine");
  assert.equal(all.length, allocated + READY, "one sandbox per session, none orphaned or duplicated");
}

describe("kill -9 and restart", () => {
  it("during the PUT's operation: the operation finishes after the restart and the pool is warm", async () => {
    await start();
    const put = await call("PUT", armPoolUrl(server!.url, POOL, RG), {
      body: {
        location: "eastus",
        properties: { scaleConfiguration: { maxConcurrentSessions: 12, readySessionInstances: READY } },
      },
    });
    assert.equal(put.status, 201, put.text);
    const operation = put.headers["azure-asyncoperation"]!;
    // Let it get as far as starting sandboxes, then die.
    await until("a sandbox to be created", async () => (await dockerIds(POOL_LABEL)).length > 0, 60_000);
    await crash();
    await start();
    const done = await waitForOperation(operation.replace(/^https?:\/\/[^/]+/, server!.url));
    assert.equal(done["status"], "Succeeded", JSON.stringify(done));
    const pool = await call("GET", armPoolUrl(server!.url, POOL, RG));
    assert.equal(
      (pool.body as { properties: { provisioningState: string } }).properties.provisioningState,
      "Succeeded",
    );
    await assertConsistent();
  });

  it("during claims: every answered session survives with its state, none is duplicated", async () => {
    const names = ["claim-1", "claim-2", "claim-3", "claim-4", "claim-5"];
    // Two claims find a warm sandbox, the others start cold; the kill lands while those are in flight.
    let answeredSoFar = 0;
    const answers = names.map((n) =>
      exec(n, `v = ${JSON.stringify(n)}\nv`).then(
        (r) => {
          if (r.status === 200) answeredSoFar++;
          return { name: n, status: r.status, value: resultOf(r) };
        },
        () => ({ name: n, status: 0, value: undefined }),
      ),
    );
    await until("a claim to be answered", async () => answeredSoFar > 0);
    await crash();
    const settled = await Promise.all(answers);
    const answered = settled.filter((a) => a.status === 200);
    assert.ok(answered.length > 0, "some claims were answered before the kill");
    for (const a of answered) assert.equal(a.value, a.name);
    for (const a of settled) assert.ok(a.status === 200 || a.status === 0, `${a.name}: ${a.status}`);

    await start();
    const known = await identifiers();
    for (const a of answered) {
      assert.ok(known.includes(a.name), `${a.name} was answered, so its session must survive`);
      const again = await exec(a.name, "v");
      assert.equal(resultOf(again), a.name, `${a.name} keeps its state: the same sandbox, adopted`);
      assert.equal(again.headers["x-sessionpool-session-replaced"], undefined);
    }
    await assertConsistent();
    // An identifier whose claim was cut off simply gets a session now.
    for (const a of settled.filter((s) => s.status !== 200)) {
      const r = await exec(a.name, "1 + 1");
      assert.equal(r.status, 200, r.text);
    }
  });

  it("during an execution: the session is adopted with its state and files", async () => {
    const first = await exec("runner", "x = 'kept'\nopen('/mnt/data/before.txt', 'w').write('b')");
    assert.equal(first.status, 200, first.text);
    const long = exec(
      "runner",
      "import time\nopen('/mnt/data/started.txt', 'w').write('s')\ntime.sleep(3)\ny = 'finished'",
    ).catch(() => undefined);
    // Crash once the execution is visibly under way inside the sandbox (file requests are answered meanwhile).
    await until("the execution has started", async () => {
      const files = await call("GET", at("/files", "runner"));
      return (
        (files.body as { value?: { name: string }[] }).value?.some((f) => f.name === "started.txt") ?? false
      );
    });
    await crash();
    assert.equal(await long, undefined, "the caller's connection ended with the server");
    await start();
    const after = await exec("runner", "x");
    assert.equal(resultOf(after), "kept");
    const files = await call("GET", at("/files", "runner"));
    const names = (files.body as { value: { name: string }[] }).value.map((f) => f.name);
    assert.ok(names.includes("before.txt"), JSON.stringify(names));
    assert.ok(names.includes("started.txt"), "the execution had begun inside the sandbox");
    await assertConsistent();
  });

  it("during a file upload: no partial file appears, and the session goes on", async () => {
    const first = await exec("uploader", "z = 3");
    assert.equal(first.status, 200, first.text);
    const boundary = "----sessionpoolcrash";
    const url = new URL(at("/files", "uploader"));
    const upload = httpRequest(url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        "content-type": `multipart/form-data; boundary=${boundary}`,
        "transfer-encoding": "chunked",
      },
    });
    const ended = new Promise<string>((resolve) => {
      upload.on("error", (err) => resolve(err.message));
      upload.on("response", (res) => resolve(`answered ${res.statusCode}`));
    });
    upload.write(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    // 8 MiB of the file reach the server (and the sandbox), the rest never does.
    for (let i = 0; i < 7; i++) upload.write(Buffer.alloc(1024 * 1024, i));
    // The last MiB written out to the server's socket (its callback), then the crash.
    await new Promise<void>((resolve, reject) =>
      upload.write(Buffer.alloc(1024 * 1024, 7), (err) => (err ? reject(err) : resolve())),
    );
    await crash();
    assert.doesNotMatch(await ended, /^answered/, "the upload could not have finished");
    upload.destroy();

    await start();
    const files = await call("GET", at("/files", "uploader"));
    assert.equal(files.status, 200, files.text);
    const names = (files.body as { value: { name: string }[] }).value.map((f) => f.name);
    assert.deepEqual(names, [], "neither big.bin nor its temporary file is there");
    const hidden = await exec("uploader", "import os\nsorted(os.listdir('/mnt/data'))");
    assert.equal(resultOf(hidden), "[]", "no temporary leftovers in /mnt/data either");
    assert.equal(resultOf(await exec("uploader", "z")), 3);
    await assertConsistent();
  });
});
