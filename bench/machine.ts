// What the benchmark ran on, recorded next to the numbers: cpu, cores, memory, kernel, engine, node, load.
import { execFileSync } from "node:child_process";
import { cpus, loadavg, release, totalmem } from "node:os";

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  dockerVersion: string;
  cgroupVersion: string;
  nodeVersion: string;
  /** Containers already running when the run started (not the bench's): other load on the engine. */
  otherContainersAtStart: number;
  loadAverage1mAtStart: number;
  /** Filled in when the run ends: the load the measurements ran under (the bench's own included). */
  loadAverage1mAtEnd?: number;
  gitCommit: string;
}

function quiet(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, {
      encoding: "utf8",
      timeout: 15_000,
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return "unknown";
  }
}

export function machineInfo(): MachineInfo {
  const running = quiet("docker", ["ps", "-q"]);
  const commit = quiet("git", ["-C", import.meta.dirname, "rev-parse", "--short", "HEAD"]);
  const dirty = quiet("git", ["-C", import.meta.dirname, "status", "--porcelain", "--untracked-files=no"]);
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryBytes: totalmem(),
    kernel: release(),
    dockerVersion: quiet("docker", ["version", "--format", "{{.Server.Version}}"]),
    cgroupVersion: quiet("docker", ["info", "--format", "{{.CgroupVersion}}"]),
    nodeVersion: process.version,
    otherContainersAtStart: running === "" || running === "unknown" ? 0 : running.split("\n").length,
    loadAverage1mAtStart: loadavg()[0] ?? 0,
    gitCommit:
      commit === "unknown" ? commit : `${commit}${dirty !== "" && dirty !== "unknown" ? "+dirty" : ""}`,
  };
}
