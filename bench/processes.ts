// Child processes for the benchmark, bounded: each has a deadline, runs in its own process group, and is killed
// (the group, by its pid) when the deadline passes or the run is interrupted.
import { type ChildProcess, spawn } from "node:child_process";

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

const live = new Set<ChildProcess>();

/** Kills every child still running (the whole group of each); for finally blocks and signal handlers. */
export function killAll(): void {
  for (const child of live) killGroup(child);
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }
}

export function run(
  command: string,
  args: string[],
  options: { timeoutMs: number; env?: NodeJS.ProcessEnv; input?: string },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    live.add(child);
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, options.timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      live.delete(child);
      reject(err);
    });
    child.once("close", (code, signal) => {
      const ms = performance.now() - started;
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr, ms, timedOut });
    });
    child.stdin!.end(options.input ?? "");
  });
}

/** A long-lived child the caller talks to; registered so killAll() reaches it. */
export function spawnTracked(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], detached: true });
  live.add(child);
  child.once("close", () => live.delete(child));
  return child;
}

export function stop(child: ChildProcess): void {
  killGroup(child);
}
