// Session records are written without waiting for the disk (store putSession), so a claim's record could in
// principle be lost while its sandbox lives on. Adoption after a restart must then never offer that used sandbox
// to the next identifier: the agent says whether it ever ran anything, and a "warm" record for a used sandbox
// is refused.
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, it } from "node:test";
import { type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";

let fx: RuntimeFixture;

before(async () => {
  fx = await startRuntimeServer();
  const op = await fx.createPool("adopt", {
    scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 1 },
  });
  assert.equal(op["status"], "Succeeded", JSON.stringify(op));
});

after(async () => {
  await fx?.close();
});

it("a used sandbox whose record says warm (a lost claim) is removed at adoption, never handed to another identifier", async () => {
  const first = await fx.exec("adopt", "alice", "open('/mnt/data/alice.txt', 'w').write('private')\n1");
  assert.equal(first.status, 200, first.text);
  const aliceSandbox = first.headers["x-ms-session-guid"];
  assert.ok(aliceSandbox);

  await fx.stop();
  // What a lost claim leaves: the record of alice's sandbox back to warm, no identifier.
  const db = new DatabaseSync(join(fx.dataDir, "sessionpool.db"));
  const changed = db
    .prepare(
      "UPDATE sessions SET state = 'ready', identifier = NULL, allocated_at = NULL WHERE identifier = 'alice'",
    )
    .run();
  db.close();
  assert.equal(changed.changes, 1);

  await fx.restart();
  // Every warm sandbox is a candidate for bobby: whichever he gets, it is not alice's.
  for (const id of ["bobby", "carol", "dave1"]) {
    const r = await fx.exec("adopt", id, "import os\nos.path.exists('/mnt/data/alice.txt')");
    assert.equal(r.status, 200, r.text);
    assert.notEqual(r.headers["x-ms-session-guid"], aliceSandbox, `${id} was given alice's sandbox`);
    assert.equal((r.body as { result: { executionResult: unknown } }).result.executionResult, false);
  }
  const containers = await fx.containers("adopt");
  assert.ok(!containers.some((c) => c.startsWith(aliceSandbox!)), "alice's sandbox was removed");
});
