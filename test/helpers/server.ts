// Real servers for tests: in-process (fast, shares the test's event loop) or as a child process (for restarts,
// kill -9 and log inspection). Each gets its own temp data dir, removed by close().
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pino from "pino";
import { Agent, type Dispatcher, request } from "undici";
import { waitForListening } from "../../bench/bench-server.ts";
import { type RunningServer, type ServerOptions, startServer } from "../../src/server.ts";
import { startPostgres, type TestPostgres } from "./postgres.ts";

export const ROOT = resolve(import.meta.dirname, "../..");
export const SUB = "00000000-0000-0000-0000-000000000000";
export const ADMIN_TOKEN = "test-admin-token-0123456789";

export interface TestServer {
  url: string;
  dataDir: string;
  token: string;
  server: RunningServer;
  close(): Promise<void>;
}

export function tempDir(prefix = "sessionpool-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * SESSIONPOOL_TEST_STORE=postgres (scripts/test.sh's second pass of the store suites): in-process servers run on a
 * PostgreSQL cluster of this test process, one database per data dir, so a restart on the same data dir finds the
 * same database.
 */
let testPostgres: Promise<TestPostgres> | undefined;
const databases = new Map<string, Promise<string>>();
function testStore(dataDir: string): Promise<string> | undefined {
  if (process.env["SESSIONPOOL_TEST_STORE"] !== "postgres") return undefined;
  let url = databases.get(dataDir);
  if (!url) {
    testPostgres ??= startPostgres();
    url = testPostgres.then((pg) => pg.createDatabase(`t${databases.size}_${process.pid}`));
    databases.set(dataDir, url);
  }
  return url;
}

/** Starts a server in this process on a free loopback port. */
export async function startTestServer(
  options: Partial<ServerOptions> & { keepDataDir?: boolean } = {},
): Promise<TestServer> {
  const dataDir = options.dataDir ?? tempDir();
  const { keepDataDir, ...rest } = options;
  const store = options.store ?? (await testStore(dataDir));
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    dataDir,
    ...(store ? { store } : {}),
    adminToken: ADMIN_TOKEN,
    retryAfterSeconds: 0,
    logger: pino({ level: process.env["SESSIONPOOL_TEST_LOG"] ?? "silent" }),
    ...rest,
  });
  return {
    url: server.url,
    dataDir,
    token: options.adminToken ?? ADMIN_TOKEN,
    server,
    async close() {
      await server.close();
      if (!keepDataDir && !options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ChildServer {
  url: string;
  dataDir: string;
  token: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL (no cleanup at all) and wait for exit. */
  kill(): Promise<void>;
  /** Sends `signal` (e.g. SIGINT) and waits for the exit code. */
  signal(signal: NodeJS.Signals): Promise<number | null>;
}

/** Runs `bin/sessionpool serve` as a child process and waits until it listens. */
export async function spawnServer(
  args: string[],
  env: Record<string, string> = {},
  dataDir = tempDir(),
): Promise<ChildServer> {
  const child = spawn(
    join(ROOT, "bin/sessionpool"),
    ["serve", "--port", "0", "--data-dir", dataDir, ...args],
    {
      env: { ...process.env, SESSIONPOOL_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const url = await waitForListening(child, exited, () => out, 60_000);
  return {
    url,
    dataDir,
    token: env["SESSIONPOOL_ADMIN_TOKEN"] ?? ADMIN_TOKEN,
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
    async signal(signal) {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  text: string;
}

const insecureLoopback = new Agent({ connect: { rejectUnauthorized: false } });

/** A small JSON HTTP client for tests: returns status, headers and the parsed body. */
export async function call(
  method: string,
  url: string,
  options: {
    token?: string | null;
    body?: unknown;
    headers?: Record<string, string>;
    raw?: string | Buffer;
    dispatcher?: Dispatcher;
  } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== null) headers["authorization"] ??= `Bearer ${options.token ?? ADMIN_TOKEN}`;
  let body: string | Buffer | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] ??= "application/json";
  }
  const res = await request(url, {
    method: method as Dispatcher.HttpMethod,
    headers,
    ...(body === undefined ? {} : { body }),
    dispatcher: options.dispatcher ?? insecureLoopback,
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) flat[k] = Array.isArray(v) ? v.join(", ") : String(v);
  return { status: res.statusCode, headers: flat, body: parsed, text };
}

export function poolUrl(base: string, name: string, apiVersion = "2025-07-01", rg = "rg1"): string {
  return `${base}/subscriptions/${SUB}/resourceGroups/${rg}/providers/Microsoft.App/sessionPools/${name}?api-version=${apiVersion}`;
}

/** Polls an Azure-AsyncOperation URL until it leaves InProgress (bounded). */
export async function waitForOperation(
  url: string,
  token = ADMIN_TOKEN,
  timeoutMs = 180_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await call("GET", url, { token });
    const body = r.body as Record<string, unknown>;
    if (r.status !== 200) throw new Error(`operation poll answered ${r.status}: ${r.text}`);
    if (body["status"] !== "InProgress") return body;
    if (Date.now() > deadline) throw new Error(`operation still InProgress after ${timeoutMs} ms`);
    await new Promise((r2) => setTimeout(r2, 100));
  }
}

export function readLog(path: string): string {
  return readFileSync(path, "utf8");
}

/** Runs `bin/sessionpool` to completion (for commands that should refuse to start); bounded by `timeoutMs`. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<{ code: number | null; output: string }> {
  return runToExit(join(ROOT, "bin/sessionpool"), args, {
    env: { ...process.env, SESSIONPOOL_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
    timeoutMs,
    killSignal: "SIGKILL",
  });
}

/**
 * Runs a command in the repository to completion, stdout and stderr collected together; past `timeoutMs` it is
 * sent `killSignal` (SIGTERM lets a script such as the benchmark clean up what it made).
 */
export async function runToExit(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs: number; killSignal: NodeJS.Signals },
): Promise<{ code: number | null; output: string }> {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill(options.killSignal), options.timeoutMs);
  const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  clearTimeout(timer);
  return { code, output };
}

/** The same URL on another server (e.g. an operation URL from before a restart, which picked a new port). */
export function rebase(url: string, base: string): string {
  const u = new URL(url);
  return `${base}${u.pathname}${u.search}`;
}

/** Every file under `dir` (recursively) whose bytes contain `needle`. */
export function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if (readFileSync(path).includes(needle)) hits.push(path);
  }
  return hits;
}
