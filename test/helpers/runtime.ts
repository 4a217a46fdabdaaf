// A real server with the real Docker runtime for integration tests, a movable clock, and cleanup that leaves no
// sandbox behind even when a test fails.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { dockerBackend } from "../../src/backend-wiring.ts";
import type { ExecutionQueueLimits } from "../../src/core/sessions/execution-queue.ts";
import type { CapacityLimits } from "../../src/core/sessions/sandbox-capacity.ts";
import type { SandboxDefaults } from "../../src/core/sessions/sandbox-template.ts";
import type { Store } from "../../src/store/store.ts";
import {
  call,
  type Reply,
  SUB,
  startTestServer,
  type TestServer,
  tempDir,
  waitForOperation,
} from "./server.ts";

const run = promisify(execFile);

export class TestClock {
  offsetMs = 0;
  now = (): Date => new Date(Date.now() + this.offsetMs);
  advance(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
}

/**
 * The sandbox runtime the integration tests ask for: SESSIONPOOL_TEST_RUNTIME (scripts/test.sh runs the
 * isolation, hostile-code and fault suites once per runtime), else "auto" as `serve` does.
 */
export const TEST_RUNTIME = process.env["SESSIONPOOL_TEST_RUNTIME"] ?? "auto";

export interface RuntimeFixture {
  url: string;
  /** What the server settled on ("runsc" is gVisor, "runc"), read from /healthz at start. */
  sandboxRuntime: string;
  dataDir: string;
  clock: TestClock;
  server: TestServer;
  /** The pool's data-plane endpoint. */
  endpoint(pool: string, rg?: string): string;
  /** PUT a pool and wait for its operation; returns the final operation body. */
  createPool(
    pool: string,
    properties?: Record<string, unknown>,
    rg?: string,
  ): Promise<Record<string, unknown>>;
  deletePool(pool: string, rg?: string): Promise<void>;
  exec(pool: string, identifier: string, code: string, extra?: Record<string, unknown>): Promise<Reply>;
  /** Engine container ids carrying the pool's label. */
  containers(pool: string, rg?: string): Promise<string[]>;
  /** Stops the server but keeps its data dir and sandboxes (for restart tests). */
  stop(): Promise<void>;
  /** Starts again on the same data dir. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export function armPoolUrl(base: string, pool: string, rg: string, apiVersion = "2025-07-01"): string {
  return `${base}/subscriptions/${SUB}/resourceGroups/${rg}/providers/Microsoft.App/sessionPools/${pool}?api-version=${apiVersion}`;
}

/** Engine container ids carrying `label` (any state, or only those in `status`, e.g. "running"). */
export async function dockerIds(label: string, status?: string): Promise<string[]> {
  const filters = ["--filter", `label=${label}`, ...(status ? ["--filter", `status=${status}`] : [])];
  const { stdout } = await run("docker", ["ps", "-aq", "--no-trunc", ...filters], {
    timeout: 30_000,
  });
  return stdout.split("\n").filter((l) => l !== "");
}

export async function startRuntimeServer(
  options: {
    sandbox?: Partial<SandboxDefaults>;
    rg?: string;
    maxSessionsCap?: number;
    /** A data dir the test made (e.g. on a small file system); removed by close() like the default one. */
    dataDir?: string;
    uploadBufferBytes?: number;
    /** serve's --trusted-proxy. */
    trustedProxies?: string[];
    executionQueue?: Partial<ExecutionQueueLimits>;
    /** Keep-alive comments on an idle streamed execution (default 15 s). */
    streamHeartbeatMs?: number;
    capacity?: Partial<CapacityLimits>;
    /** Decorates the server's store (e.g. one that fails on purpose). */
    wrapStore?: (store: Store) => Store;
  } = {},
): Promise<RuntimeFixture> {
  const clock = new TestClock();
  const dataDir = options.dataDir ?? tempDir("sessionpool-it-");
  const rgDefault = options.rg ?? `it${Math.random().toString(36).slice(2, 8)}`;
  const pools = new Set<string>();
  const start = () =>
    startTestServer({
      dataDir,
      now: clock.now,
      backend: dockerBackend({
        reapIntervalMs: 100,
        sandbox: { runtime: TEST_RUNTIME, ...options.sandbox },
        ...(options.uploadBufferBytes ? { uploadBufferBytes: options.uploadBufferBytes } : {}),
        ...(options.executionQueue ? { executionQueue: options.executionQueue } : {}),
        ...(options.streamHeartbeatMs ? { streamHeartbeatMs: options.streamHeartbeatMs } : {}),
        ...(options.capacity ? { capacity: options.capacity } : {}),
      }),
      ...(options.wrapStore ? { wrapStore: options.wrapStore } : {}),
      ...(options.maxSessionsCap ? { maxSessionsCap: options.maxSessionsCap } : {}),
      ...(options.trustedProxies ? { trustedProxies: options.trustedProxies } : {}),
    });
  let server = await start();
  const health = await call("GET", `${server.url}/healthz`);
  const sandboxRuntime = (health.body as { sandboxRuntime?: string }).sandboxRuntime ?? "unknown";
  const keyLabel = (pool: string, rg: string) =>
    `io.sessionpool.pool=${`${SUB}/${rg}/${pool}`.toLowerCase()}`;

  const fixture: RuntimeFixture = {
    get url() {
      return server.url;
    },
    sandboxRuntime,
    dataDir,
    clock,
    get server() {
      return server;
    },
    endpoint: (pool, rg = rgDefault) =>
      `${server.url}/subscriptions/${SUB}/resourceGroups/${rg}/sessionPools/${pool}`,
    async createPool(pool, properties = {}, rg = rgDefault) {
      pools.add(`${rg}/${pool}`);
      const r = await call("PUT", armPoolUrl(server.url, pool, rg), {
        body: { location: "eastus", properties },
      });
      if (r.status !== 201 && r.status !== 200)
        throw new Error(`PUT ${pool} answered ${r.status}: ${r.text}`);
      return waitForOperation(r.headers["azure-asyncoperation"]!);
    },
    async deletePool(pool, rg = rgDefault) {
      const r = await call("DELETE", armPoolUrl(server.url, pool, rg));
      if (r.status === 202) await waitForOperation(r.headers["azure-asyncoperation"]!);
      pools.delete(`${rg}/${pool}`);
    },
    exec(pool, identifier, code, extra = {}) {
      return call(
        "POST",
        `${fixture.endpoint(pool)}/executions?api-version=2025-10-02-preview&identifier=${encodeURIComponent(identifier)}`,
        { body: { code, timeoutInSeconds: 60, ...extra } },
      );
    },
    containers: (pool, rg = rgDefault) => dockerIds(keyLabel(pool, rg)),
    async stop() {
      await server.server.close();
    },
    async restart() {
      server = await start();
    },
    async close() {
      try {
        for (const p of [...pools]) {
          const [rg, pool] = p.split("/") as [string, string];
          await fixture.deletePool(pool, rg).catch(() => {});
        }
        await server.server.close();
      } finally {
        // Whatever a failed test left: remove by label, never by name.
        for (const p of pools) {
          const [rg, pool] = p.split("/") as [string, string];
          const ids = await dockerIds(keyLabel(pool, rg)).catch(() => []);
          if (ids.length > 0) await run("docker", ["rm", "-f", ...ids], { timeout: 60_000 }).catch(() => {});
        }
        await run("rm", ["-rf", dataDir]).catch(() => {});
      }
    },
  };
  return fixture;
}

/** Tight sandbox limits for the hostile-code tests: bombs and fills hit them quickly on a small machine. */
export const TIGHT_SANDBOX: Partial<SandboxDefaults> = {
  memoryBytes: 256 * 1024 * 1024,
  pidsLimit: 64,
  dataDirBytes: 32 * 1024 * 1024,
  tmpBytes: 16 * 1024 * 1024,
};

/** Polls `check` every 100 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A Prometheus metric from the server's /metrics: the sum of its samples whose labels include `labels`. */
export async function metric(url: string, name: string, labels = ""): Promise<number> {
  const r = await call("GET", `${url}/metrics`);
  return r.text
    .split("\n")
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

/** Multipart body with one `file` part, built by hand so tests control the filename exactly. */
export function multipartFile(
  filename: string,
  content: Buffer | string,
  field = "file",
): { body: Buffer; contentType: string } {
  const boundary = `----sessionpool${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return {
    body: Buffer.concat([head, Buffer.from(content), tail]),
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}
