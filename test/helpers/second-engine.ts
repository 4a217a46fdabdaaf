// A second Docker engine on this host for fleet tests (scripts/second-engine.sh): its own socket, data root, exec
// root and containerd, no bridge and no iptables, gVisor registered as in the first engine. Started on demand
// and stopped again only by the caller that started it.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./server.ts";

const run = promisify(execFile);
const SCRIPT = join(ROOT, "scripts/second-engine.sh");

/** The second engine's DOCKER_HOST (fixed by scripts/second-engine.sh). */
export const SECOND_ENGINE_HOST = "unix:///run/sessionpool-engine2/docker.sock";

/** The skip reason for tests that need a second engine where this machine cannot run one. */
export const SECOND_ENGINE_LACKS =
  "lacks: a second Docker engine (needs root and dockerd, Debian's docker.io)";

/** True when this process can start a second dockerd: it runs as root and dockerd is installed. */
export function secondEngineAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  const dirs = [...(process.env["PATH"] ?? "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  return dirs.some((dir) => dir !== "" && existsSync(join(dir, "dockerd")));
}

export interface SecondEngine {
  dockerHost: string;
  /** Whether startSecondEngine started it (false: it was running already, and stop() leaves it running). */
  started: boolean;
  /** Stops the engine if this call started it (an engine that was already running is left running); idempotent. */
  stop(): Promise<void>;
}

function script(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return run("bash", [SCRIPT, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }).catch(
    (err: unknown) => {
      const e = err as { stderr?: string; message: string };
      throw new Error(`scripts/second-engine.sh ${args.join(" ")} failed: ${e.stderr?.trim() || e.message}`);
    },
  );
}

/**
 * Starts the second engine unless it runs already, and loads `imageRefs` into it from the first engine (the
 * first copy of the ~550 MiB sandbox image takes seconds; later ones find it in the kept data root).
 */
export async function startSecondEngine(imageRefs: string[]): Promise<SecondEngine> {
  const wasRunning = await script(["status"], 30_000).then(
    () => true,
    () => false,
  );
  await script(["start"], 120_000);
  let stopped = false;
  const engine: SecondEngine = {
    dockerHost: SECOND_ENGINE_HOST,
    started: !wasRunning,
    async stop() {
      if (stopped || wasRunning) return;
      stopped = true;
      await script(["stop"], 120_000);
    },
  };
  try {
    if (imageRefs.length > 0) await script(["load-image", ...imageRefs], 600_000);
  } catch (err) {
    await engine.stop().catch(() => {});
    throw err;
  }
  return engine;
}

/** The PythonLTS sandbox image ref: the last stdout line of scripts/build-images.sh (cached; builds when missing). */
export async function pythonImageRef(): Promise<string> {
  const { stdout } = await run("bash", [join(ROOT, "scripts/build-images.sh")], {
    timeout: 1_200_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const ref = stdout.trim().split("\n").at(-1) ?? "";
  if (ref === "") throw new Error("scripts/build-images.sh printed no image ref");
  return ref;
}
