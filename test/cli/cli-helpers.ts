// Runs `bin/sessionpool` as a user would: a child process with its own config dir, stdin a pipe (not a terminal),
// stdout and stderr captured apart. Never synchronous: the server under test runs in this process.
import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../helpers/server.ts";

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export interface CliTarget {
  url?: string;
  token?: string;
  configDir: string;
}

export interface RunOptions {
  /** Extra environment (an empty string removes a variable). */
  env?: Record<string, string>;
  input?: string;
  timeoutMs?: number;
}

/** The environment a CLI run sees: none of the caller's SESSIONPOOL_* settings leak in. */
export function cliEnv(target: CliTarget, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("SESSIONPOOL_")) env[k] = v;
  env["SESSIONPOOL_CONFIG_DIR"] = target.configDir;
  if (target.url) env["SESSIONPOOL_ENDPOINT"] = target.url;
  if (target.token) env["SESSIONPOOL_TOKEN"] = target.token;
  for (const [k, v] of Object.entries(extra)) {
    if (v === "") delete env[k];
    else env[k] = v;
  }
  return env;
}

export function cliRunner(target: CliTarget) {
  return (args: string[], o: RunOptions = {}): Promise<CliRun> => runCli(args, cliEnv(target, o.env), o);
}

export function runCli(args: string[], env: NodeJS.ProcessEnv, o: RunOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(ROOT, "bin/sessionpool"), args, { env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 60_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({
        code,
        stdout: stdoutBytes.toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        stdoutBytes,
      });
    });
    child.stdin.end(o.input ?? "");
  });
}

/** What a failed command must look like: one ERROR line on stderr, no stack trace, nothing on stdout. */
export function assertOneErrorLine(r: CliRun, pattern: RegExp): void {
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("(add --help"));
  if (lines.length !== 1 || !pattern.test(lines[0]!) || /\n\s+at /.test(r.stderr) || r.stdout !== "") {
    throw new Error(
      `expected one error line matching ${pattern}, got exit ${r.code}:\nstderr: ${r.stderr}\nstdout: ${r.stdout}`,
    );
  }
}

/** Runs the CLI on a pseudo-terminal (util-linux `script`), for what it shows only to people: progress, prompts. */
export function runInTerminal(args: string[], env: NodeJS.ProcessEnv, input = ""): Promise<CliRun> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const line = [join(ROOT, "bin/sessionpool"), ...args].map(quote).join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qec", line, "/dev/null"], { env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => out.push(d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      const bytes = Buffer.concat(out);
      resolve({ code, stdout: bytes.toString("utf8"), stderr: "", stdoutBytes: bytes });
    });
    child.stdin.end(input);
  });
}

export function hasScript(): boolean {
  try {
    execFileSync("script", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
