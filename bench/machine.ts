// What the benchmark ran on, recorded next to the numbers: cpu, cores, memory, kernel, engine, gVisor, node, load.
import { execFileSync, spawnSync } from "node:child_process";
import { cpus, loadavg, release, totalmem } from "node:os";

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  dockerVersion: string;
  cgroupVersion: string;
  /** The engine's gVisor runtime: version, platform and flags (the platform sets the price of every syscall). */
  gvisor: string;
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

/** "runsc 0.0~20221219.0, platform ptrace, --network=none --host-uds=open", or why there is none. */
function gvisorInfo(): string {
  let runtimes: Record<string, { path?: string; runtimeArgs?: string[] }>;
  try {
    runtimes = JSON.parse(quiet("docker", ["info", "--format", "{{json .Runtimes}}"]));
  } catch {
    return "unknown";
  }
  const runsc = runtimes["runsc"];
  if (runsc === undefined) return "none (the engine has no runtime named runsc)";
  const path = runsc.path ?? "runsc";
  const args = runsc.runtimeArgs ?? [];
  const version = quiet(path, ["--version"])
    .split("\n")[0]!
    .replace(/^runsc version /, "");
  // The engine's flags win; otherwise the binary's default, which `runsc flags` prints (on stderr).
  let platform = args.map((a) => /^--?platform(?:=(.+))?$/.exec(a)).find((m) => m !== null)?.[1];
  if (platform === undefined) {
    const flags = spawnSync(path, ["flags"], { encoding: "utf8", timeout: 15_000 });
    platform = /-platform string[\s\S]*?\(default "([^"]+)"\)/.exec(`${flags.stdout}${flags.stderr}`)?.[1];
  }
  return `runsc ${version}, platform ${platform ?? "unknown"}${args.length > 0 ? `, ${args.join(" ")}` : ""}`;
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
    gvisor: gvisorInfo(),
    nodeVersion: process.version,
    otherContainersAtStart: running === "" || running === "unknown" ? 0 : running.split("\n").length,
    loadAverage1mAtStart: loadavg()[0] ?? 0,
    gitCommit:
      commit === "unknown" ? commit : `${commit}${dirty !== "" && dirty !== "unknown" ? "+dirty" : ""}`,
  };
}
