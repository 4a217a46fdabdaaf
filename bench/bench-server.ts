// The real server for the benchmark: `bin/sessionpool serve` as a child process on a loopback port, under a
// named sandbox runtime (runc or gVisor) or, for the load test, the one it chooses, with a temp data dir; its CPU
// time and memory can be read on their own. Plus the pool operations the rows need (create, wait, delete, watch
// the engine).
// Everything it creates is tracked so `close()` removes it even after a failed row.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DockerDriver } from "../src/runtime/drivers/docker/docker-driver.ts";
import { LABEL_POOL, LABEL_RUNTIME } from "../src/runtime/labels.ts";
import { chooseSandboxRuntimes } from "../src/runtime/sandbox-runtime.ts";
import { BenchClient, type TimedReply } from "./bench-client.ts";
import type { BenchRuntime } from "./plan.ts";

export const SUBSCRIPTION = "00000000-0000-0000-0000-00000000b0b0";
const ARM_API = "2025-07-01";
export const DATA_API = "2025-10-02-preview";

/** What BenchServer needs of a server: where it listens and how to stop it. */
interface ServerHandle {
  readonly url: string;
  close(): Promise<void>;
}

export interface SpawnedServerInfo {
  /** The server process (not a shell around it): its /proc entry is the server's own memory. */
  pid: number;
  /** Its stdout and stderr are pipes the caller may also listen to. */
  process: ChildProcess;
  /** The last lines the server wrote (stdout and stderr), for reports and failures. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string | null>;
}

const ROOT = resolve(import.meta.dirname, "..");
const OUTPUT_KEEP_CHARS = 64 * 1024;

/** How BenchServer.start runs a server that is one of a fleet (bench/fleet-rows.ts). */
export interface StartOptions {
  /** More serve flags (e.g. `--store postgres://...`). */
  args?: string[];
  /** The admin token (default: a random one); the servers of one fleet share it. */
  token?: string;
  /** Runs on the fresh data dir before the server starts (e.g. to copy the fleet's keys into it). */
  prepare?: (dataDir: string) => void;
}

export interface BenchPool {
  name: string;
  /** The pool key as labels carry it ("sub/rg/name", lower case). */
  key: string;
  endpoint: string;
  armUrl: string;
  /**
   * The data plane's credential headers: the pool's own token (getAuthtoken), as a client of the pool holds, once
   * the pool exists; the admin token until then.
   */
  credentials?: Record<string, string>;
}

export class BenchServer {
  readonly client: BenchClient;
  /** For the engine-side view (sandboxes by pool label, memory); never used on a measured path. */
  readonly driver: DockerDriver;
  readonly resourceGroup: string;
  /** Set when the server runs as a child process (BenchServer.spawn). */
  readonly child: SpawnedServerInfo | undefined;
  /** The sandbox runtime the server was told to use; undefined when it chose itself (BenchServer.spawn). */
  readonly runtime: BenchRuntime | undefined;
  readonly #server: ServerHandle;
  readonly #dataDir: string;
  readonly #pools = new Map<string, BenchPool>();
  #closed: Promise<void> | undefined;

  private constructor(
    server: ServerHandle,
    dataDir: string,
    token: string,
    resourceGroup: string,
    runtime: BenchRuntime | undefined,
    child?: SpawnedServerInfo,
  ) {
    this.#server = server;
    this.child = child;
    this.runtime = runtime;
    this.#dataDir = dataDir;
    this.client = new BenchClient(token);
    this.driver = new DockerDriver();
    this.resourceGroup = resourceGroup;
  }

  /**
   * Why the engine cannot run sandboxes under `runtime` (the server's own check, so the reason reads as the
   * server would say it), or undefined when it can.
   */
  static async runtimeUnavailable(runtime: BenchRuntime): Promise<string | undefined> {
    const driver = new DockerDriver();
    try {
      chooseSandboxRuntimes(runtime, await driver.runtimes({ signal: AbortSignal.timeout(30_000) }));
      return undefined;
    } catch (err) {
      return (err as Error).message;
    } finally {
      await driver.close();
    }
  }

  /**
   * Starts `sessionpool serve` as a child process with sandboxes forced under `runtime` (never "auto": a row must
   * say which boundary it measured). A process of its own, as users run it: the bench's client does not share its
   * event loop, and its CPU time is the server's alone (cpuMs).
   */
  static start(runtime: BenchRuntime, options: StartOptions = {}): Promise<BenchServer> {
    return BenchServer.#spawn(
      ["--sandbox-runtime", runtime, "--log-level", "warn", ...(options.args ?? [])],
      60_000,
      runtime,
      options,
    );
  }

  /**
   * Runs `bin/sessionpool serve --port 0` with a temp data dir and a random admin token as a child process and
   * waits (bounded) until it listens. `args` are extra serve flags (e.g. `--log-level warn`).
   */
  static spawn(args: string[] = [], startTimeoutMs = 60_000): Promise<BenchServer> {
    return BenchServer.#spawn(args, startTimeoutMs, undefined);
  }

  static async #spawn(
    args: string[],
    startTimeoutMs: number,
    runtime: BenchRuntime | undefined,
    options: StartOptions = {},
  ): Promise<BenchServer> {
    const dataDir = mkdtempSync(join(tmpdir(), "sessionpool-bench-"));
    const token = options.token ?? randomBytes(24).toString("hex");
    try {
      options.prepare?.(dataDir);
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
    const child: ChildProcess = spawn(
      join(ROOT, "bin/sessionpool"),
      ["serve", "--port", "0", "--data-dir", dataDir, ...args],
      { env: { ...process.env, SESSIONPOOL_ADMIN_TOKEN: token }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    const keep = (d: Buffer) => {
      out += d.toString();
      if (out.length > 2 * OUTPUT_KEEP_CHARS) out = out.slice(-OUTPUT_KEEP_CHARS);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    const exited = new Promise<number | string | null>((r) =>
      child.once("exit", (code, signal) => r(code ?? signal)),
    );
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(killer);
    };
    try {
      const url = await waitForListening(child, exited, () => out, startTimeoutMs);
      const info: SpawnedServerInfo = {
        pid: child.pid!,
        process: child,
        output: () => out.slice(-OUTPUT_KEEP_CHARS),
        exited,
      };
      const handle: ServerHandle = { url, close: stop };
      return new BenchServer(
        handle,
        dataDir,
        token,
        `${runtime ? "bench" : "load"}-${randomBytes(4).toString("hex")}`,
        runtime,
        info,
      );
    } catch (err) {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
  }

  get url(): string {
    return this.#server.url;
  }

  /** The server's data dir (its store, keys and instance id), removed by close(). */
  get dataDir(): string {
    return this.#dataDir;
  }

  /** CPU time (user + system) the server process has used so far, in ms. */
  cpuMs(): number {
    if (!this.child) throw new Error("the server runs in this process: its CPU time is not its own");
    const fields = readFileSync(`/proc/${this.child.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    // utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks (100 per second on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  }

  /** PUTs a PythonLTS pool; resolves with the pool and the Azure-AsyncOperation URL once accepted. */
  async putPool(
    name: string,
    scale: { ready: number; max: number },
    /** Other properties (e.g. a CustomContainer template) merged over the PythonLTS defaults. */
    extra: Record<string, unknown> = {},
    /** The ARM api-version of the PUT (2025-10-02-preview for mcpServerSettings). */
    apiVersion = ARM_API,
  ): Promise<{ pool: BenchPool; operationUrl: string; reply: TimedReply }> {
    const armUrl = `${this.url}/subscriptions/${SUBSCRIPTION}/resourceGroups/${this.resourceGroup}/providers/Microsoft.App/sessionPools/${name}?api-version=${apiVersion}`;
    const pool: BenchPool = {
      name,
      key: `${SUBSCRIPTION}/${this.resourceGroup}/${name}`.toLowerCase(),
      endpoint: `${this.url}/subscriptions/${SUBSCRIPTION}/resourceGroups/${this.resourceGroup}/sessionPools/${name}`,
      armUrl,
    };
    this.#pools.set(name, pool);
    const reply = await this.client.send("PUT", armUrl, {
      location: "eastus",
      properties: {
        containerType: "PythonLTS",
        scaleConfiguration: { maxConcurrentSessions: scale.max, readySessionInstances: scale.ready },
        dynamicPoolConfiguration: {
          lifecycleConfiguration: { lifecycleType: "Timed", cooldownPeriodInSeconds: 3600 },
        },
        sessionNetworkConfiguration: { status: "EgressDisabled" },
        ...extra,
      },
    });
    const operationUrl = reply.headers["azure-asyncoperation"];
    if ((reply.status !== 200 && reply.status !== 201) || !operationUrl) {
      throw new Error(`PUT pool ${name} answered ${reply.status}: ${reply.text}`);
    }
    const body = reply.body as { properties?: { poolManagementEndpoint?: string } };
    if (body.properties?.poolManagementEndpoint) pool.endpoint = body.properties.poolManagementEndpoint;
    return { pool, operationUrl, reply };
  }

  /** Polls an operation every `pollMs` until it leaves InProgress; throws unless it Succeeded. */
  async waitOperation(operationUrl: string, timeoutMs: number, pollMs = 25): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const r = await this.client.send("GET", operationUrl);
      const status = (r.body as { status?: string } | undefined)?.status;
      if (r.status !== 200) throw new Error(`operation poll answered ${r.status}: ${r.text}`);
      if (status === "Succeeded") return;
      if (status !== "InProgress") throw new Error(`operation ended ${status}: ${r.text}`);
      if (performance.now() > deadline) throw new Error(`operation still InProgress after ${timeoutMs} ms`);
      await sleep(pollMs);
    }
  }

  async createPool(
    name: string,
    scale: { ready: number; max: number },
    timeoutMs: number,
  ): Promise<BenchPool> {
    const { pool, operationUrl } = await this.putPool(name, scale);
    await this.waitOperation(operationUrl, timeoutMs);
    pool.credentials = { authorization: `Bearer ${await this.poolToken(pool)}` };
    return pool;
  }

  /** Deletes the pool through ARM and waits (bounded) until the engine has none of its sandboxes left. */
  async deletePool(pool: BenchPool, timeoutMs = 120_000): Promise<void> {
    const r = await this.client.send("DELETE", pool.armUrl);
    if (r.status === 202 && r.headers["azure-asyncoperation"]) {
      await this.waitOperation(r.headers["azure-asyncoperation"], timeoutMs, 100);
    } else if (r.status !== 200 && r.status !== 204) {
      throw new Error(`DELETE pool ${pool.name} answered ${r.status}: ${r.text}`);
    }
    await this.waitSandboxesGone(pool, timeoutMs);
    this.#pools.delete(pool.name);
  }

  async sandboxes(pool: BenchPool): Promise<string[]> {
    return (await this.driver.list({ [LABEL_POOL]: pool.key })).map((s) => s.id);
  }

  /**
   * Throws unless every sandbox of the pool runs under the runtime this server was told to use (the label the
   * server puts on each): a row must not report runc numbers as gVisor's or the other way round.
   */
  async assertRuntime(pool: BenchPool): Promise<void> {
    if (this.runtime === undefined) return;
    for (const sandbox of await this.driver.list({ [LABEL_POOL]: pool.key })) {
      const runtime = sandbox.labels[LABEL_RUNTIME];
      if (runtime !== this.runtime) {
        throw new Error(
          `sandbox ${sandbox.id.slice(0, 12)} runs under ${runtime ?? "an unlabelled runtime"}, not ${this.runtime}`,
        );
      }
    }
  }

  async waitSandboxesGone(pool: BenchPool, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = await this.sandboxes(pool);
      if (left.length === 0) return;
      if (performance.now() > deadline) {
        throw new Error(`${left.length} sandboxes of pool ${pool.name} still exist after ${timeoutMs} ms`);
      }
      await sleep(200);
    }
  }

  /** Ready/pending gauges from /metrics: what the reconciler reports, read like an operator would. */
  async gauges(pool: BenchPool): Promise<{ ready: number; allocated: number; pending: number }> {
    const r = await this.client.send("GET", `${this.url}/metrics`);
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.text}`);
    const read = (name: string) => {
      const line = r.text
        .split("\n")
        .find((l) => l.startsWith(`${name}{`) && l.includes(`pool="${pool.key}"`));
      return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
    };
    return {
      ready: read("sessionpool_pool_ready_sessions"),
      allocated: read("sessionpool_pool_allocated_sessions"),
      pending: read("sessionpool_pool_pending_sessions"),
    };
  }

  /** Waits until the pool holds `ready` warm sessions and creates nothing more. */
  async waitReady(pool: BenchPool, ready: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const g = await this.gauges(pool);
      if (g.ready >= ready && g.pending === 0) return;
      if (performance.now() > deadline) {
        throw new Error(
          `pool ${pool.name}: ${g.ready}/${ready} ready, ${g.pending} pending after ${timeoutMs} ms`,
        );
      }
      await sleep(20);
    }
  }

  /** A data-plane token scoped to the pool (ARM getAuthtoken), as a client of that pool would hold. */
  async poolToken(pool: BenchPool): Promise<string> {
    const url = pool.armUrl.replace("?", "/getAuthtoken?");
    const r = await this.client.send("POST", url);
    const token = (r.body as { properties?: { token?: string } } | undefined)?.properties?.token;
    if (r.status !== 200 || !token)
      throw new Error(`getAuthtoken for ${pool.name} answered ${r.status}: ${r.text}`);
    return token;
  }

  execUrl(pool: BenchPool, identifier: string): string {
    return `${pool.endpoint}/executions?api-version=${DATA_API}&identifier=${encodeURIComponent(identifier)}`;
  }

  execute(pool: BenchPool, identifier: string, code = "1+1"): Promise<TimedReply> {
    return this.client.send(
      "POST",
      this.execUrl(pool, identifier),
      { code, timeoutInSeconds: 60 },
      120_000,
      pool.credentials,
    );
  }

  async deleteSession(pool: BenchPool, identifier: string): Promise<void> {
    const r = await this.client.send(
      "DELETE",
      `${pool.endpoint}/session?api-version=${DATA_API}&identifier=${encodeURIComponent(identifier)}`,
      undefined,
      120_000,
      pool.credentials,
    );
    if (r.status !== 204 && r.status !== 200 && r.status !== 404) {
      throw new Error(`DELETE session ${identifier} answered ${r.status}: ${r.text}`);
    }
  }

  /**
   * Deletes every pool still tracked, stops the server, removes any sandbox the engine still has for those
   * pools (a stopped server leaves sandboxes running for adoption), and removes the data dir. Safe twice.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const errors: unknown[] = [];
      for (const pool of [...this.#pools.values()]) {
        await this.deletePool(pool, 60_000).catch((err) => errors.push(err));
      }
      await this.client.close().catch(() => {});
      await this.#server.close().catch((err) => errors.push(err));
      for (const pool of this.#pools.values()) {
        for (const id of await this.sandboxes(pool).catch(() => [] as string[])) {
          await this.driver.remove(id).catch((err) => errors.push(err));
        }
      }
      await this.driver.close();
      rmSync(this.#dataDir, { recursive: true, force: true });
      if (errors.length > 0) {
        process.stderr.write(`bench: cleanup problems: ${errors.map((e) => String(e)).join("; ")}\n`);
      }
    })();
    return this.#closed;
  }
}

/**
 * The URL a `sessionpool serve` child prints once it listens ("sessionpool listening on URL"); rejects when it
 * exits first or does not listen within `timeoutMs`. Shared with the tests' spawnServer.
 */
export function waitForListening(
  child: ChildProcess,
  exited: Promise<unknown>,
  output: () => string,
  timeoutMs: number,
): Promise<string> {
  return new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the server did not listen within ${timeoutMs} ms:\n${output()}`)),
      timeoutMs,
    );
    const check = () => {
      // Anchored: the JSON log line says the same words, with a quote and brace after the URL.
      const m = /^sessionpool listening on (\S+)$/m.exec(output());
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]!);
      }
    };
    child.stdout!.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code} before listening:\n${output()}`));
    });
  });
}
