// Finished executions are kept for GET /executions/{id}, within a byte budget: what callers print must not make
// the server's memory grow without bound. The agent is a stand-in here (what it prints is the point); the real
// agent's output bounds are tested in test/integration/hostile-code.test.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ExecResult } from "../../src/agent-channel/agent-client.ts";
import { Metrics } from "../../src/core/metrics.ts";
import { Executions } from "../../src/core/sessions/executions.ts";
import type { LiveSandbox, SessionManager } from "../../src/core/sessions/session-manager.ts";

const POOL = "sub/rg/pool";

function live(stdoutChars: number, extra: Partial<Record<keyof ExecResult, unknown>> = {}): LiveSandbox {
  const result = {
    status: "Succeeded",
    stdout: "x".repeat(stdoutChars),
    stderr: "",
    stdoutTruncated: false,
    stderrTruncated: false,
    result: null,
    images: [],
    error: null,
    timedOut: false,
    restarted: false,
    durationMs: 1,
    ...extra,
  } as ExecResult;
  return {
    rec: { poolKey: POOL, identifier: "alice" },
    kind: "code-interpreter",
    agent: { current: () => ({ exec: async () => result }) },
  } as unknown as LiveSandbox;
}

const sessions = { find: () => undefined, touch: () => {} } as unknown as SessionManager;
const input = {
  code: "print('x' * n)",
  codeInputType: "Inline",
  executionType: "Synchronous",
  timeoutInSeconds: 10,
  maxOutputChars: 10_000_000,
} as const;

describe("execution retention", () => {
  it("forgets the oldest finished executions once their output passes the byte budget", async () => {
    // 1,000 characters of stdout and a 36-character id are 2,072 bytes kept; the budget holds two of them.
    const executions = new Executions(sessions, new Metrics(), { maxRetainedBytes: 4_500 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const record = executions.start(live(1_000), input);
      await record.done;
      ids.push(record.id);
      assert.ok(executions.retainedBytes <= 4_500, `budget held after ${i + 1}: ${executions.retainedBytes}`);
    }
    const kept = ids.map((id) => executions.get(POOL, "alice", id) !== undefined);
    assert.deepEqual(kept, [false, false, false, true, true], "the newest ones are kept, the oldest go");
    assert.equal(executions.retainedBytes, 2 * 2_072);
  });

  it("keeps a result bigger than the budget for its own answer, then lets it go", async () => {
    const executions = new Executions(sessions, new Metrics(), { maxRetainedBytes: 1_000 });
    const record = executions.start(live(10_000), input);
    await record.done;
    assert.equal(record.result?.stdout.length, 10_000, "the caller still gets the whole output");
    assert.equal(executions.get(POOL, "alice", record.id), undefined);
    assert.equal(executions.retainedBytes, 0);
  });

  it("counts only strings: a result shaped by code in the sandbox cannot throw or poison the budget", async () => {
    const executions = new Executions(sessions, new Metrics(), { maxRetainedBytes: 1_000_000 });
    for (const extra of [
      { result: { a: 1 } },
      { result: { repr: 5, html: 5, png: null } },
      { images: [{ base64: 5 }, null, 7] },
      { images: "not a list", stdout: 12 },
    ]) {
      const record = executions.start(live(10, extra), { ...input, executionType: "Asynchronous" });
      await record.done;
      assert.ok(Number.isFinite(executions.retainedBytes), JSON.stringify(extra));
    }
    assert.equal(
      executions.retainedBytes,
      4 * 72 + 3 * 20,
      "four ids, and the three with a string stdout of 10 characters",
    );
  });
});
