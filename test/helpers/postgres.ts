// A private PostgreSQL for tests: Debian's server binaries (package `postgresql`) run a throwaway cluster in a temp
// dir, listening on a free loopback port with `trust` auth for 127.0.0.1 only. fsync stays on: what the store
// promises about durability is what the tests check. PostgreSQL refuses to run as root, so as root the cluster
// runs as the `postgres` system user that Debian's package creates.
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./ports.ts";

const run = promisify(execFile);

const PG_ROOT = "/usr/lib/postgresql";
/** What tests skip with when this machine has no PostgreSQL server binaries. */
export const POSTGRES_SKIP = "lacks: PostgreSQL (Debian package postgresql)";

export interface TestPostgres {
  /** The superuser's URL of the `postgres` database (no password: trust auth on loopback). */
  url: string;
  port: number;
  dataDir: string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /**
   * Stops the cluster (`fast`: clients are disconnected, everything committed is written; `immediate`: the
   * processes are killed as in a crash, and the next start replays the WAL) and starts it again on the same port.
   */
  restart(options?: { mode?: "fast" | "immediate" }): Promise<void>;
  /** Stops this cluster (by its data dir) and removes its files; safe to call twice. */
  stop(): Promise<void>;
}

/** The bin dir of the highest PostgreSQL version installed, or undefined. */
function binDir(): string | undefined {
  if (!existsSync(PG_ROOT)) return undefined;
  const versions = readdirSync(PG_ROOT)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(PG_ROOT, v, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(PG_ROOT, versions[0], "bin");
}

const asRoot = () => userInfo().uid === 0;

function postgresIds(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  return { uid: id("-u"), gid: id("-g") };
}

function postgresUserExists(): boolean {
  try {
    postgresIds();
    return true;
  } catch {
    return false;
  }
}

/** True when a test cluster can be started here: the server binaries, and as root the `postgres` user. */
export function postgresAvailable(): boolean {
  const bin = binDir();
  if (!bin || !existsSync(join(bin, "initdb"))) return false;
  return !asRoot() || (existsSync("/usr/sbin/runuser") && postgresUserExists());
}

/** Runs a PostgreSQL program as the user the cluster belongs to. */
function pgCommand(bin: string, program: string, args: string[]): [string, string[]] {
  const path = join(bin, program);
  return asRoot() ? ["/usr/sbin/runuser", ["-u", "postgres", "--", path, ...args]] : [path, args];
}

/**
 * Every cluster this process started and has not stopped: stopped at exit even when a test forgot, or when the
 * runner ends the process with a signal (then the signal is raised again, to end it as it would have, unless the
 * program handles it itself).
 */
const running = new Set<() => void>();
const killAll = () => {
  for (const kill of running) kill();
  running.clear();
};
process.once("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll();
    // A program with a handler of its own (the benchmark's cleanup) ends itself once that is done.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

const DIR_PREFIX = "sessionpool-pg-";
/** In each cluster's temp dir: the pid of the test process that started it. */
const OWNER_FILE = "owner.pid";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Stops and removes the clusters of test processes that died without cleaning up (killed by a timeout, say): only
 * those whose owner file names a process that no longer runs, so another run's cluster is never touched.
 */
function sweepOrphans(bin: string): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, OWNER_FILE), "utf8"));
    } catch {
      continue;
    }
    if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) continue;
    try {
      if (existsSync(join(dir, "data", "postmaster.pid"))) {
        const [file, argv] = pgCommand(bin, "pg_ctl", [
          "-D",
          join(dir, "data"),
          "-m",
          "immediate",
          "-w",
          "stop",
        ]);
        execFileSync(file, argv, { stdio: "ignore", timeout: 30_000 });
      }
    } catch {
      // Not running after all.
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  if (!bin || !postgresAvailable()) throw new Error(POSTGRES_SKIP);
  sweepOrphans(bin);
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  await writeFile(join(dir, OWNER_FILE), String(process.pid));
  const dataDir = join(dir, "data");
  const socketDir = join(dir, "socket");
  const logFile = join(dir, "postgres.log");
  await mkdir(socketDir);
  const owner = asRoot() ? postgresIds() : undefined;
  if (owner) for (const path of [dir, socketDir]) await chown(path, owner.uid, owner.gid);
  const exec = async (program: string, args: string[], timeoutMs = 120_000) => {
    const [file, argv] = pgCommand(bin, program, args);
    await run(file, argv, { timeout: timeoutMs });
  };
  const log = async () => {
    try {
      return (await readFile(logFile, "utf8")).split("\n").slice(-20).join("\n");
    } catch {
      return "(no log)";
    }
  };

  let stopped = false;
  try {
    // --no-sync skips only initdb's own flush of the fresh cluster (seconds on a slow disk); the server runs with
    // fsync on, and a crash of its processes (restart "immediate") leaves the OS's cache, and so those files, intact.
    // A language's collation (ICU's en-US) rather than byte order, as most production databases have: what the
    // store orders must not depend on it. (ICU as the default provider needs PostgreSQL 15.)
    const collation =
      Number(bin.split("/").at(-2)) >= 15
        ? ["--locale-provider=icu", "--icu-locale=en-US", "--locale=C.UTF-8"]
        : ["--locale=C.UTF-8"];
    await exec("initdb", [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "-E",
      "UTF8",
      ...collation,
      "--no-sync",
      "--auth=trust",
    ]);
    // Only TCP from 127.0.0.1: no local-socket or other-host entries.
    await writeFile(join(dataDir, "pg_hba.conf"), "host all all 127.0.0.1/32 trust\n");
    if (owner) await chown(join(dataDir, "pg_hba.conf"), owner.uid, owner.gid);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let port = 0;
  const start = async () => {
    await exec("pg_ctl", [
      "-D",
      dataDir,
      "-l",
      logFile,
      "-w",
      "-t",
      "60",
      "-o",
      `-c listen_addresses=127.0.0.1 -p ${port} -k ${socketDir} -c fsync=on -c synchronous_commit=on`,
      "start",
    ]);
  };
  const stopCluster = async (mode: "fast" | "immediate") => {
    await exec("pg_ctl", ["-D", dataDir, "-m", mode, "-w", "-t", "60", "stop"]);
  };
  const killAtExit = () => {
    try {
      const [file, argv] = pgCommand(bin, "pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"]);
      execFileSync(file, argv, { stdio: "ignore", timeout: 30_000 });
    } catch {
      // Already stopped.
    }
    rmSync(dir, { recursive: true, force: true });
  };

  // A port found free can be taken before the server binds it: try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await start();
      break;
    } catch (err) {
      if (attempt >= 3) {
        const detail = await log();
        await rm(dir, { recursive: true, force: true });
        throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${detail}`);
      }
    }
  }
  running.add(killAtExit);

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    port,
    dataDir,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(name)}`;
    },
    async restart(options = {}) {
      await stopCluster(options.mode ?? "fast");
      try {
        await start();
      } catch (err) {
        throw new Error(`PostgreSQL did not start again: ${(err as Error).message}\n${await log()}`);
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      running.delete(killAtExit);
      try {
        await stopCluster("fast");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
