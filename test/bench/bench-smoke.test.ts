// The benchmark cannot rot: `bench/run.ts --smoke` runs every row in a tiny size as a child process, and the JSON
// it writes has each row with numbers or an explicit reason why not, the gVisor rows beside the runc rows, plus the
// chart. No timing is asserted.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { BenchServer } from "../../bench/bench-server.ts";
import { ROW_IDS, type Row, RUNTIME_ROWS, runtimeRowId } from "../../bench/plan.ts";
import type { BenchReport } from "../../bench/report.ts";
import { postgresAvailable } from "../helpers/postgres.ts";
import { ROOT, runToExit } from "../helpers/server.ts";

const TIMEOUT_MS = 150_000;

function hasNumbers(row: Row): boolean {
  const latency = row.latency;
  if (latency && latency.n > 0 && [latency.p50Ms, latency.p95Ms, latency.p99Ms].every(Number.isFinite))
    return true;
  const values = Object.values(row.values ?? {});
  return values.length > 0 && values.some(Number.isFinite);
}

test("bench --smoke reports every row and draws the chart", { timeout: TIMEOUT_MS + 10_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), "sessionpool-bench-smoke-"));
  try {
    // SIGTERM so the bench removes what it created; it is bounded, this only guards a hang.
    const { code, output } = await runToExit(
      process.execPath,
      [join(ROOT, "bench/run.ts"), "--smoke", "--out", out],
      { timeoutMs: TIMEOUT_MS, killSignal: "SIGTERM" },
    );
    assert.equal(code, 0, output);

    const report = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as BenchReport;
    assert.equal(report.mode, "smoke");
    assert.deepEqual(
      report.rows.map((r) => r.id),
      [...ROW_IDS],
      "every row, in order",
    );
    for (const row of report.rows) {
      assert.ok(
        hasNumbers(row) || (typeof row.unavailable === "string" && row.unavailable.length > 0),
        `row ${row.id} has neither numbers nor a reason: ${JSON.stringify(row)}`,
      );
    }
    for (const id of ["custom-ingress-proxy", "custom-ingress-direct"]) {
      const row = report.rows.find((r) => r.id === id);
      assert.ok(row && hasNumbers(row), `${id} is measured: ${JSON.stringify(row)}`);
    }
    // The fleet row is measured where this machine can start PostgreSQL: the request through A reached B's session.
    const fleet = report.rows.find((r) => r.id === "fleet-forwarded-exec");
    if (postgresAvailable())
      assert.ok(fleet && hasNumbers(fleet), `fleet row is measured: ${JSON.stringify(fleet)}`);
    else assert.match(fleet?.unavailable ?? "", /PostgreSQL/, "the fleet row says why it was not measured");
    // Where the engine has gVisor, its rows are measured, not merely explained away; where it has not, they say so.
    const gvisorMissing = await BenchServer.runtimeUnavailable("runsc");
    for (const id of RUNTIME_ROWS.map((r) => runtimeRowId(r, "runsc"))) {
      const row = report.rows.find((r) => r.id === id);
      if (gvisorMissing === undefined) {
        assert.ok(row && hasNumbers(row), `${id} is measured: ${JSON.stringify(row)}`);
      } else {
        assert.match(row?.unavailable ?? "", /gVisor/, `${id} says why it was not measured`);
      }
    }
    assert.deepEqual(
      report.gvisorPrice.map((p) => p.row),
      [...RUNTIME_ROWS],
      "every runtime row is priced under gVisor against runc",
    );
    for (const p of report.gvisorPrice) {
      assert.ok(p.ratio !== undefined || p.note !== undefined, `${p.row}: a ratio or why not`);
    }
    assert.match(output, /Price of the stronger boundary/, "the gVisor section is printed");
    assert.equal(report.targets.length, 10);
    for (const t of report.targets) assert.ok(["PASS", "MISS", "N/A"].includes(t.verdict), JSON.stringify(t));
    for (const key of [
      "cpuModel",
      "cores",
      "memoryBytes",
      "kernel",
      "dockerVersion",
      "nodeVersion",
    ] as const) {
      assert.ok(report.machine[key] !== undefined && report.machine[key] !== "", `machine.${key}`);
    }
    assert.ok(Number.isFinite(Date.parse(report.date)));

    const svgPath = join(out, "latest.svg");
    assert.ok(existsSync(svgPath), "latest.svg is written");
    const svg = readFileSync(svgPath, "utf8");
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(svg, /<\/svg>\s*$/);
    assert.match(output, /^Targets$/m, "the table is printed");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
