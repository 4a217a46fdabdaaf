// The driver conformance suite against the Docker driver on the real engine, under the test runtime
// (SESSIONPOOL_TEST_RUNTIME: gVisor where the engine has it, or runc). The probe looks in with `docker exec` and
// reads the limits from the sandbox's cgroup on the host, where the kernel enforces them.
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { DockerDriver } from "../../src/runtime/drivers/docker/docker-driver.ts";
import {
  dockerExec,
  dockerHostFromEnv,
  dockerOptionsFromEnv,
  ensureBusyboxImage,
} from "../helpers/busybox-image.ts";
import { startRegistry } from "../helpers/registry.ts";
import { TEST_RUNTIME } from "../helpers/runtime.ts";
import {
  describeSandboxDriverConformance,
  type EnforcedLimits,
  type ExecResult,
  type SandboxProbe,
} from "./sandbox-driver-conformance.ts";

const docker = new Docker(dockerOptionsFromEnv());

/** `docker exec`, as the sandbox's user. */
function exec(id: string, argv: string[]): Promise<ExecResult> {
  return dockerExec(docker, id, argv);
}

/** A number from a cgroup file; undefined for "max" (v2) or the v1 "no limit" values. */
async function cgroupNumber(path: string): Promise<number | undefined> {
  const text = (await readFile(path, "utf8")).trim();
  if (text === "max" || text === "-1") return undefined;
  const value = Number(text.split(/\s+/)[0]);
  // cgroup v1 says "no memory limit" with a page-rounded LONG_MAX.
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * The limits of the sandbox's cgroup, found from its first process on the host (under gVisor that is the
 * runtime's sandbox process, which the same cgroup holds with everything else of the sandbox).
 */
async function limits(id: string): Promise<EnforcedLimits> {
  const { State } = await docker.getContainer(id).inspect();
  const lines = (await readFile(`/proc/${State.Pid}/cgroup`, "utf8")).split("\n");
  const v1 = (controller: string) => {
    const line = lines.find((l) => l.split(":")[1]?.split(",").includes(controller));
    return line === undefined ? undefined : `/sys/fs/cgroup/${line.split(":")[1]}${line.split(":")[2]}`;
  };
  const memoryDir = v1("memory");
  if (memoryDir !== undefined) {
    const cpuDir = v1("cpu")!;
    const quota = await cgroupNumber(join(cpuDir, "cpu.cfs_quota_us"));
    const period = await cgroupNumber(join(cpuDir, "cpu.cfs_period_us"));
    return {
      memoryBytes: await cgroupNumber(join(memoryDir, "memory.limit_in_bytes")),
      pids: await cgroupNumber(join(v1("pids")!, "pids.max")),
      cpu: quota === undefined || period === undefined ? undefined : quota / period,
    };
  }
  const dir = `/sys/fs/cgroup${lines.find((l) => l.startsWith("0::"))?.slice(3)}`;
  const [quota, period] = (await readFile(join(dir, "cpu.max"), "utf8")).trim().split(/\s+/);
  return {
    memoryBytes: await cgroupNumber(join(dir, "memory.max")),
    pids: await cgroupNumber(join(dir, "pids.max")),
    cpu: quota === "max" ? undefined : Number(quota) / Number(period),
  };
}

const probe: SandboxProbe = {
  exec,
  limits,
  async kill(id) {
    await docker.getContainer(id).kill({ signal: "SIGKILL" });
  },
};

describeSandboxDriverConformance("docker", () => new DockerDriver({ dockerHost: dockerHostFromEnv() }), {
  image: () => ensureBusyboxImage(docker),
  runtime: TEST_RUNTIME,
  probe,
  makeUnreachableDriver: () =>
    new DockerDriver({ dockerHost: `unix://${join(tmpdir(), "sessionpool-conformance-no-such.sock")}` }),
  registry: () => startRegistry(),
});
