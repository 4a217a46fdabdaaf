// Stops and starts the machine's Docker engine for fault tests: the dockerd that scripts/ensure-docker.sh started
// (its pidfile), or a systemd-managed docker. Without live-restore, stopping it ends every container.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./server.ts";

const run = promisify(execFile);
const PIDFILE = "/run/sessionpool-dockerd.pid";

async function answers(): Promise<boolean> {
  try {
    await run("docker", ["info", "--format", "{{.ServerVersion}}"], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function ourDockerd(): number | undefined {
  if (!existsSync(PIDFILE)) return undefined;
  const pid = Number(readFileSync(PIDFILE, "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    return comm === "dockerd" ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function systemdManaged(): Promise<boolean> {
  try {
    const { stdout } = await run("systemctl", ["is-active", "docker"], { timeout: 10_000 });
    return stdout.trim() === "active";
  } catch {
    return false;
  }
}

/**
 * Why this machine's engine may not be restarted by a test, or undefined when it may: the dockerd that
 * scripts/ensure-docker.sh started (as on CI), or a systemd-managed one when SESSIONPOOL_TEST_RESTART_ENGINE=1
 * says so (restarting it stops every container on the machine, not only ours).
 */
export async function engineNotRestartable(): Promise<string | undefined> {
  if (ourDockerd() !== undefined) return undefined;
  if (process.env["SESSIONPOOL_TEST_RESTART_ENGINE"] === "1" && (await systemdManaged())) return undefined;
  return `this machine's Docker engine was not started by scripts/ensure-docker.sh (${PIDFILE}); set SESSIONPOOL_TEST_RESTART_ENGINE=1 to let the test restart a systemd-managed one (it stops every container)`;
}

/**
 * Stops the engine, runs `whileDown`, then starts it again and waits until it answers. The engine is started
 * again even when `whileDown` fails. Throws when this machine's engine is not one these tests may restart.
 */
export async function restartEngine(whileDown: () => Promise<void>): Promise<void> {
  const refused = await engineNotRestartable();
  if (refused) throw new Error(`cannot restart the Docker engine: ${refused}`);
  const pid = ourDockerd();
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    const deadline = Date.now() + 60_000;
    while (existsSync(`/proc/${pid}`)) {
      if (Date.now() > deadline) throw new Error(`dockerd ${pid} did not stop within 60 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } else {
    await run("systemctl", ["stop", "docker.socket", "docker"], { timeout: 60_000 });
  }
  let failure: unknown;
  try {
    await whileDown();
  } catch (err) {
    failure = err;
  }
  if (pid !== undefined) {
    await run("bash", [join(ROOT, "scripts/ensure-docker.sh")], { timeout: 120_000 });
  } else {
    await run("systemctl", ["start", "docker"], { timeout: 120_000 });
  }
  const deadline = Date.now() + 60_000;
  while (!(await answers())) {
    if (Date.now() > deadline) throw new Error("the Docker engine did not answer within 60 s of its start");
    await new Promise((r) => setTimeout(r, 200));
  }
  if (failure !== undefined) throw failure;
}
