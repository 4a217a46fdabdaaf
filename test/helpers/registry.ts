// A private container registry on loopback for integration tests: Debian's `docker-registry` (distribution)
// run as a child process with htpasswd (bcrypt) basic auth and storage in a temp dir. The engine treats
// 127.0.0.0/8 registries as insecure-allowed (plain HTTP), so no daemon configuration is needed.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { request } from "undici";
import { freePort } from "./ports.ts";

const run = promisify(execFile);

export const REGISTRY_BINARY = "/usr/bin/docker-registry";
export const HTPASSWD_BINARY = "/usr/bin/htpasswd";

export interface TestRegistry {
  /** "127.0.0.1:PORT": the registry part of image references and `registryCredentials.server`. */
  host: string;
  username: string;
  password: string;
  /** What the registry printed (for failure messages). */
  output(): string;
  /** Stops the registry (by the pid this helper spawned) and removes its storage. */
  stop(): Promise<void>;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Installs Debian packages, running `apt-get update` only when the first attempt cannot find them. */
async function aptInstall(packages: string[]): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    run("apt-get", ["install", "-y", "--no-install-recommends", ...packages], { env, timeout: 300_000 });
  try {
    await install();
  } catch {
    await run("apt-get", ["update"], { env, timeout: 300_000 });
    await install();
  }
}

/** Makes sure docker-registry and htpasswd are installed (apt-get when they are not). */
export async function ensureRegistryTools(): Promise<void> {
  const missing: string[] = [];
  if (!(await exists(REGISTRY_BINARY))) missing.push("docker-registry");
  if (!(await exists(HTPASSWD_BINARY))) missing.push("apache2-utils");
  if (missing.length > 0) await aptInstall(missing);
}

/** Starts a registry on a free loopback port and waits until it answers (401 without credentials). */
export async function startRegistry(options: { username?: string } = {}): Promise<TestRegistry> {
  await ensureRegistryTools();
  const username = options.username ?? "sessionpool-tester";
  const password = randomBytes(12).toString("hex");
  const dir = await mkdtemp(join(tmpdir(), "sessionpool-registry-"));
  try {
    const { stdout } = await run(HTPASSWD_BINARY, ["-Bbn", username, password], { timeout: 30_000 });
    await writeFile(join(dir, "htpasswd"), stdout, { mode: 0o600 });
    // A port found free can be taken before the registry binds it: try a few.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      try {
        return await launch(dir, port, username, password);
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function launch(dir: string, port: number, username: string, password: string): Promise<TestRegistry> {
  const host = `127.0.0.1:${port}`;
  const config = join(dir, `config-${port}.yml`);
  await writeFile(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "  accesslog:",
      "    disabled: true",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${join(dir, "data")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: ${host}`,
      `  secret: ${randomBytes(16).toString("hex")}`,
      "auth:",
      "  htpasswd:",
      "    realm: sessionpool-test",
      `    path: ${join(dir, "htpasswd")}`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(REGISTRY_BINARY, ["serve", config], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const stopChild = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, "SIGTERM");
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined)
          process.kill(child.pid, "SIGKILL");
      }, 5000);
      await exited;
      clearTimeout(timer);
    }
  };
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}):\n${out}`);
      try {
        const res = await request(`http://${host}/v2/`, { headersTimeout: 1000, bodyTimeout: 1000 });
        await res.body.dump();
        if (res.statusCode === 401) break;
        throw new Error(`GET /v2/ answered ${res.statusCode} without credentials; expected 401`);
      } catch (err) {
        if ((err as Error).message.includes("expected 401")) throw err;
      }
      if (Date.now() > deadline)
        throw new Error(`docker-registry did not answer on ${host} in 20 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stopChild();
    throw err;
  }
  return {
    host,
    username,
    password,
    output: () => out,
    async stop() {
      await stopChild();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
