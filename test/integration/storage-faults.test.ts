// The data dir's disk fills up or is read-only: callers get a clear, documented error, sessions already running
// keep working, nothing in the store is corrupted, and once space returns everything works again without a
// restart (and after one). The data dirs are a small tmpfs and a loop-mounted ext4 file system the test makes
// itself (needs root, as CI runs).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { basename, join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { armPoolUrl, dockerIds, type RuntimeFixture, startRuntimeServer } from "../helpers/runtime.ts";
import { call, SUB, spawnServer, tempDir } from "../helpers/server.ts";

const run = promisify(execFile);
const POOL = "disk";
const RG = `disk${process.pid}`;

let mountPoint: string;
let fx: RuntimeFixture;

before(async () => {
  mountPoint = tempDir("sessionpool-small-disk-");
  await run("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", mountPoint]);
  fx = await startRuntimeServer({ dataDir: join(mountPoint, "data"), rg: RG });
  await fx.createPool(POOL, { scaleConfiguration: { maxConcurrentSessions: 6, readySessionInstances: 1 } });
});
after(async () => {
  await fx?.close();
  await run("umount", [mountPoint]).catch(() => {});
  rmSync(mountPoint, { recursive: true, force: true });
});

interface ErrorBody {
  error: { code: string; message: string };
}

/** Writes zeros until the file system says ENOSPC; returns the filler's path. */
function fillDisk(dir: string): string {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(fd);
  }
  // Whatever is left is smaller than a chunk: fill it byte-wise too.
  const rest = openSync(path, "a");
  try {
    for (;;) writeSync(rest, Buffer.alloc(512));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(rest);
  }
  return path;
}

function integrity(dbPath: string): string {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    return String(
      (db.prepare("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check,
    );
  } finally {
    db.close();
  }
}

describe("data dir faults", () => {
  it("disk full: documented 503s, running sessions keep working, all well again once space returns", async () => {
    const dbPath = join(fx.dataDir, "sessionpool.db");
    const alice = await fx.exec(POOL, "alice", "x = 41");
    assert.equal(alice.status, 200, alice.text);

    // Empty the WAL into the database first, so that every later write needs new space.
    const side = new DatabaseSync(dbPath);
    side.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    side.close();
    const filler = fillDisk(fx.dataDir);

    // The management API: a new pool cannot be recorded; the caller is told why, in ARM's envelope.
    const put = await call("PUT", armPoolUrl(fx.url, "another", RG), {
      body: { location: "eastus", properties: {} },
    });
    assert.equal(put.status, 503, put.text);
    assert.equal((put.body as ErrorBody).error.code, "StorageUnavailable");
    assert.match((put.body as ErrorBody).error.message, /disk is full/);
    assert.ok(put.headers["retry-after"]);

    // A new identifier cannot be recorded either: a documented 503, and the warm sandbox is not given away.
    const bobby = await fx.exec(POOL, "bobby", "1");
    assert.equal(bobby.status, 503, bobby.text);
    assert.equal((bobby.body as ErrorBody).error.code, "StorageUnavailable");
    assert.equal(bobby.headers["x-ms-error-code"], "StorageUnavailable");

    // alice's session runs on: its state lives in its sandbox, not in the data dir.
    const busy = await fx.exec(POOL, "alice", "x + 1");
    assert.equal(busy.status, 200, busy.text);
    assert.equal((busy.body as { result: { executionResult: unknown } }).result.executionResult, 42);
    // Reads answer as usual.
    assert.equal((await call("GET", armPoolUrl(fx.url, POOL, RG))).status, 200);

    // Space returns: no restart needed, and the store is intact.
    rmSync(filler);
    assert.equal(integrity(dbPath), "ok");
    const bobAgain = await fx.exec(POOL, "bobby", "2 + 2");
    assert.equal(bobAgain.status, 200, bobAgain.text);
    const created = await fx.createPool("another", {
      scaleConfiguration: { maxConcurrentSessions: 2, readySessionInstances: 0 },
    });
    assert.equal(created["status"], "Succeeded");

    // And after a restart: every pool and both sessions are there.
    await fx.stop();
    assert.equal(integrity(dbPath), "ok");
    await fx.restart();
    const kept = await fx.exec(POOL, "alice", "x");
    assert.equal((kept.body as { result: { executionResult: unknown } }).result.executionResult, 41);
    const list = await call("GET", `${fx.endpoint(POOL)}/listSessions?api-version=2025-10-02-preview`);
    const ids = ((list.body as { sessions: { identifier: string }[] }).sessions ?? [])
      .map((s) => s.identifier)
      .sort();
    assert.deepEqual(ids, ["alice", "bobby"]);
  });

  it("the file system turns read-only under the server: documented 503s, sessions go on, the store survives", async () => {
    const work = tempDir("sessionpool-ro-disk-");
    const image = join(work, "disk.img");
    const mnt = join(work, "mnt");
    const rg = `${RG}ro`;
    mkdirSync(mnt);
    await run("truncate", ["-s", "64M", image]);
    await run("mkfs.ext4", ["-q", "-F", image]);
    await run("mount", ["-o", "loop,errors=remount-ro", image, mnt]);
    let ro: RuntimeFixture | undefined;
    try {
      ro = await startRuntimeServer({ dataDir: join(mnt, "data"), rg });
      await ro.createPool(POOL, {
        scaleConfiguration: { maxConcurrentSessions: 4, readySessionInstances: 1 },
      });
      assert.equal((await ro.exec(POOL, "alice", "x = 5")).status, 200);
      const dbPath = join(ro.dataDir, "sessionpool.db");

      // The kernel finds an error on the file system and stops all writes to it, as with a failing disk.
      const device = (await run("findmnt", ["-n", "-o", "SOURCE", mnt])).stdout.trim();
      writeFileSync(`/sys/fs/ext4/${basename(device)}/trigger_fs_error`, "sessionpool storage-faults test\n");

      const put = await call("PUT", armPoolUrl(ro.url, "another", rg), {
        body: { location: "eastus", properties: {} },
      });
      assert.equal(put.status, 503, put.text);
      assert.equal((put.body as ErrorBody).error.code, "StorageUnavailable");
      const bobby = await ro.exec(POOL, "bobby", "1");
      assert.equal(bobby.status, 503, bobby.text);
      assert.equal((bobby.body as ErrorBody).error.code, "StorageUnavailable");
      const alice = await ro.exec(POOL, "alice", "x + 1");
      assert.equal(alice.status, 200, alice.text);
      assert.equal((alice.body as { result: { executionResult: unknown } }).result.executionResult, 6);

      // An operator repairs it: stop the server, let go of the file system, check it, mount it again.
      await ro.stop();
      const label = `io.sessionpool.pool=${`${SUB}/${rg}/${POOL}`.toLowerCase()}`;
      const ids = await dockerIds(label);
      if (ids.length > 0) await run("docker", ["rm", "-f", ...ids]);
      await run("umount", [mnt]);
      // e2fsck exits 1 when it corrected the file system: that is success here.
      await run("e2fsck", ["-f", "-y", image]).catch((err: { code?: number }) => {
        if (err.code !== 1) throw err;
      });
      await run("mount", ["-o", "loop", image, mnt]);
      assert.equal(integrity(dbPath), "ok");

      // Everything recorded before the failure is there; the pool warms again and serves.
      await ro.restart();
      const pool = await call("GET", armPoolUrl(ro.url, POOL, rg));
      assert.equal(pool.status, 200, pool.text);
      const fresh = await ro.exec(POOL, "bobby", "2 + 2");
      assert.equal(fresh.status, 200, fresh.text);
    } finally {
      await ro?.close();
      await run("umount", [mnt]).catch(() => {});
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("read-only data dir: the server refuses to start and says why", async () => {
    const dir = join(mountPoint, "readonly");
    mkdirSync(dir);
    await run("mount", ["--bind", dir, dir]);
    try {
      await run("mount", ["-o", "remount,bind,ro", dir]);
      await assert.rejects(spawnServer(["--no-runtime"], {}, dir), (err: Error) => {
        assert.match(err.message, /exited with 1/);
        assert.match(err.message, /data dir .* cannot be used: it is on a read-only file system/);
        assert.doesNotMatch(err.message, /\n\s+at /, "a message, not a stack trace");
        return true;
      });
    } finally {
      await run("umount", [dir]).catch(() => {});
    }
  });
});
