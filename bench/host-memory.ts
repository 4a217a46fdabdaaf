// Host-side memory readings for the idle-session rows: MemAvailable from /proc/meminfo (everything included),
// a container's cgroup (v1 or v2) and the processes in it, the containerd shim that babysits it, and the engine
// daemons.
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** MemAvailable in bytes. */
export function memAvailableBytes(): number {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"));
  if (!m) throw new Error("/proc/meminfo has no MemAvailable line");
  return Number(m[1]) * 1024;
}

/** The median of `count` MemAvailable readings `gapMs` apart: one reading jumps with unrelated activity. */
export async function steadyMemAvailableBytes(count = 5, gapMs = 200): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(gapMs);
    readings.push(memAvailableBytes());
  }
  readings.sort((a, b) => a - b);
  return readings[Math.floor(readings.length / 2)]!;
}

export interface CgroupMemory {
  /** memory.usage_in_bytes (v1) or memory.current (v2). */
  usageBytes: number;
  /** Anonymous memory (rss in v1, anon in v2). */
  anonBytes: number;
  /** Page cache, including tmpfs/shmem. */
  cacheBytes: number;
  inactiveFileBytes: number;
  /** Kernel memory charged to the cgroup, when the kernel reports it. */
  kernelBytes: number | undefined;
}

/** Where the container's memory cgroup may be, for the cgroupfs (v1 "docker/<id>") and systemd (v2 scope) layouts. */
function cgroupDirs(containerId: string): string[] {
  return [
    `/sys/fs/cgroup/memory/docker/${containerId}`,
    `/sys/fs/cgroup/memory/system.slice/docker-${containerId}.scope`,
    `/sys/fs/cgroup/system.slice/docker-${containerId}.scope`,
    `/sys/fs/cgroup/docker/${containerId}`,
  ];
}

/**
 * The host pids in the container's memory cgroup. Under gVisor these are not the session's processes (those live
 * inside the Sentry) but runsc's own: the Sentry (`runsc-sandbox`), the gofer (`runsc-gofer`) and the stubs the
 * platform runs application code in.
 */
export function containerCgroupPids(containerId: string): number[] {
  for (const dir of cgroupDirs(containerId)) {
    try {
      return readFileSync(`${dir}/cgroup.procs`, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map(Number);
    } catch {
      // not this layout
    }
  }
  return [];
}

/** The container's memory cgroup, for the cgroupfs (v1 "docker/<id>") and systemd (v2 scope) layouts. */
export function containerCgroupMemory(containerId: string): CgroupMemory | undefined {
  for (const dir of cgroupDirs(containerId)) {
    const v1 = readNumber(`${dir}/memory.usage_in_bytes`);
    const v2 = v1 === undefined ? readNumber(`${dir}/memory.current`) : undefined;
    if (v1 === undefined && v2 === undefined) continue;
    const stat = readStat(`${dir}/memory.stat`);
    if (v1 !== undefined) {
      return {
        usageBytes: v1,
        anonBytes: stat["total_rss"] ?? stat["rss"] ?? 0,
        cacheBytes: stat["total_cache"] ?? stat["cache"] ?? 0,
        inactiveFileBytes: stat["total_inactive_file"] ?? stat["inactive_file"] ?? 0,
        kernelBytes: readNumber(`${dir}/memory.kmem.usage_in_bytes`),
      };
    }
    return {
      usageBytes: v2!,
      anonBytes: stat["anon"] ?? 0,
      cacheBytes: (stat["file"] ?? 0) + (stat["shmem"] ?? 0),
      inactiveFileBytes: stat["inactive_file"] ?? 0,
      kernelBytes: stat["kernel"],
    };
  }
  return undefined;
}

export interface ProcessMemory {
  pid: number;
  rssBytes: number;
  /** Proportional set size: shared pages split between the processes sharing them. */
  pssBytes: number | undefined;
}

export function processMemory(pid: number): ProcessMemory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    let pss: number | undefined;
    try {
      const rollup = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
      if (rollup) pss = Number(rollup[1]) * 1024;
    } catch {
      // older kernels have no smaps_rollup
    }
    return { pid, rssBytes: rss ? Number(rss[1]) * 1024 : 0, pssBytes: pss };
  } catch {
    return undefined;
  }
}

/** pid -> command line of every process, read once (the shim and daemon lookups share it). */
export function processTable(): Map<number, string[]> {
  const table = new Map<number, string[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8")
        .split("\0")
        .filter((a) => a !== "");
      if (argv.length > 0) table.set(Number(entry), argv);
    } catch {
      // exited meanwhile
    }
  }
  return table;
}

/** The containerd shim serving `containerId` (`containerd-shim-runc-v2 ... -id <id>`). */
export function shimPid(table: Map<number, string[]>, containerId: string): number | undefined {
  for (const [pid, argv] of table) {
    if (!/containerd-shim/.test(argv[0] ?? "")) continue;
    const i = argv.indexOf("-id");
    if (i >= 0 && argv[i + 1] === containerId) return pid;
  }
  return undefined;
}

/** Summed RSS of the engine daemons (dockerd, containerd): their growth is part of a session's cost. */
export function daemonsRssBytes(table: Map<number, string[]>): number {
  let total = 0;
  for (const [pid, argv] of table) {
    const exe = (argv[0] ?? "").split("/").at(-1);
    if (exe === "dockerd" || exe === "containerd") total += processMemory(pid)?.rssBytes ?? 0;
  }
  return total;
}

function readNumber(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

function readStat(path: string): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const line of readFileSync(path, "utf8").split("\n")) {
      const [key, value] = line.split(" ");
      if (key && value !== undefined) out[key] = Number(value);
    }
  } catch {
    // absent
  }
  return out;
}
