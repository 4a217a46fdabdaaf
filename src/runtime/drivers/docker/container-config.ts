// Pure translations between sessionpool's sandbox vocabulary and the Docker Engine API: a SandboxSpec becomes a
// hardened container config, inspect/list answers become SandboxInfo, a DOCKER_HOST string becomes modem options.
import type Docker from "dockerode";
import { RuntimeUnavailableError, SandboxCreateError } from "../../errors.ts";
import { LABEL_MANAGED, MANAGED_VALUE } from "../../labels.ts";
import type { SandboxInfo, SandboxSpec, SandboxState } from "../../sandbox-driver.ts";

/** Where the agent's socket directory appears inside every sandbox. */
export const AGENT_SOCKET_MOUNT = "/run/sessionpool";
const SHM_MAX_BYTES = 64 * 1024 * 1024;
/** Bounds what a sandbox can write to the host's disk through its stdout/stderr. */
const LOG_MAX_SIZE = "1m";
const NOFILE_SOFT = 1024;
const NOFILE_HARD = 4096;
/** Under host memory pressure the kernel kills sandbox processes before the server or the engine. */
const OOM_SCORE_ADJ = 500;

/** HostConfig fields the engine supports (API >= 1.41) that @types/dockerode does not declare. */
export type HostConfig = Docker.HostConfig & { CgroupnsMode?: "private" | "host" };
export type CreateOptions = Omit<Docker.ContainerCreateOptions, "HostConfig"> & { HostConfig: HostConfig };

/**
 * The create request for one sandbox. `networkMode` is "none" or the name of the bridge network the driver
 * prepared; `name` is a unique container name, so a create that is cut short can still be found and removed.
 */
export function containerCreateOptions(spec: SandboxSpec, name: string, networkMode: string): CreateOptions {
  const env = Object.entries(spec.env).map(([key, value]) => {
    if (key === "" || key.includes("=") || key.includes("\0")) {
      throw new SandboxCreateError(`env: '${key}' is not a valid environment variable name`);
    }
    return `${key}=${value}`;
  });
  const owner = numericOwner(spec.user);
  const tmpfs: Record<string, string> = {};
  for (const [mountPoint, sizeBytes] of Object.entries(spec.tmpfs)) {
    if (!mountPoint.startsWith("/") || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
      throw new SandboxCreateError(
        `tmpfs: '${mountPoint}' must be an absolute path with a positive whole size in bytes (got ${sizeBytes})`,
      );
    }
    // Docker adds noexec to tmpfs mounts unless told "exec"; users run their own scripts from /tmp and /mnt/data.
    const options = ["rw", "exec", "nosuid", "nodev", `size=${sizeBytes}`, "mode=1777"];
    if (owner?.uid !== undefined) options.push(`uid=${owner.uid}`);
    if (owner?.gid !== undefined) options.push(`gid=${owner.gid}`);
    tmpfs[mountPoint] = options.join(",");
  }

  const hostConfig: HostConfig = {
    NanoCpus: Math.round(spec.cpu * 1e9),
    Memory: spec.memoryBytes,
    MemorySwap: spec.memoryBytes,
    PidsLimit: spec.pidsLimit,
    ReadonlyRootfs: spec.readOnlyRootfs,
    Tmpfs: tmpfs,
    CapDrop: ["ALL"],
    SecurityOpt: [
      "no-new-privileges",
      ...(spec.seccompProfile === undefined ? [] : [`seccomp=${spec.seccompProfile}`]),
    ],
    Privileged: false,
    Devices: [],
    IpcMode: "private",
    ShmSize: Math.min(SHM_MAX_BYTES, spec.memoryBytes),
    CgroupnsMode: "private",
    NetworkMode: networkMode,
    Init: spec.init,
    Ulimits: [
      { Name: "nofile", Soft: NOFILE_SOFT, Hard: NOFILE_HARD },
      { Name: "core", Soft: 0, Hard: 0 },
    ],
    OomScoreAdj: OOM_SCORE_ADJ,
    LogConfig: { Type: "json-file", Config: { "max-size": LOG_MAX_SIZE, "max-file": "1" } },
    RestartPolicy: { Name: "no" },
    AutoRemove: false,
    PublishAllPorts: false,
  };
  if (spec.runtime !== undefined) hostConfig.Runtime = spec.runtime;
  if (spec.agentSocketDir !== undefined)
    // Read-only: the agent connects to the server's socket there, and nothing of the host's disk is writable.
    hostConfig.Binds = [`${spec.agentSocketDir}:${AGENT_SOCKET_MOUNT}:ro`];

  const options: CreateOptions = {
    name,
    Image: spec.image,
    Labels: { ...spec.labels, [LABEL_MANAGED]: MANAGED_VALUE },
    Env: env,
    StopTimeout: 1,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    OpenStdin: false,
    Tty: false,
    HostConfig: hostConfig,
  };
  if (spec.command !== undefined) options.Entrypoint = spec.command;
  if (spec.args !== undefined) options.Cmd = spec.args;
  if (spec.user !== undefined) options.User = spec.user;
  if (spec.targetPort !== undefined) options.ExposedPorts = { [`${spec.targetPort}/tcp`]: {} };
  return options;
}

/** "1000:1000" -> both ids; "1000" -> uid only; a name (resolved by the engine from /etc/passwd) -> undefined. */
function numericOwner(user: string | undefined): { uid: number; gid: number | undefined } | undefined {
  const match = user === undefined ? null : /^(\d+)(?::(\d+))?$/.exec(user);
  if (!match) return undefined;
  return { uid: Number(match[1]), gid: match[2] === undefined ? undefined : Number(match[2]) };
}

const STATES: ReadonlySet<string> = new Set<SandboxState>([
  "created",
  "running",
  "paused",
  "restarting",
  "exited",
  "dead",
  "removing",
]);

function toState(status: string | undefined): SandboxState {
  return status !== undefined && STATES.has(status) ? (status as SandboxState) : "dead";
}

function firstAddress(networks: Record<string, { IPAddress?: string }> | undefined): string | undefined {
  for (const network of Object.values(networks ?? {})) {
    if (network.IPAddress) return network.IPAddress;
  }
  return undefined;
}

export function infoFromInspect(inspect: Docker.ContainerInspectInfo): SandboxInfo {
  const state = toState(inspect.State.Status);
  const info: SandboxInfo = {
    id: inspect.Id,
    labels: inspect.Config.Labels ?? {},
    state,
    image: inspect.Config.Image,
  };
  const address = firstAddress(inspect.NetworkSettings.Networks);
  if (address !== undefined) info.address = address;
  if (state === "exited" || state === "dead") info.exitCode = inspect.State.ExitCode;
  // The engine reports "0001-01-01T00:00:00Z" for a container that never started.
  if (inspect.State.StartedAt && !inspect.State.StartedAt.startsWith("0001-")) {
    info.startedAt = new Date(inspect.State.StartedAt);
  }
  return info;
}

/** List answers carry no start time and the exit code only inside the human status ("Exited (137) 2s ago"). */
export function infoFromList(container: Docker.ContainerInfo): SandboxInfo {
  const state = toState(container.State);
  const info: SandboxInfo = {
    id: container.Id,
    labels: container.Labels ?? {},
    state,
    image: container.Image,
  };
  const address = firstAddress(container.NetworkSettings?.Networks);
  if (address !== undefined) info.address = address;
  const exited = /^Exited \((-?\d+)\)/.exec(container.Status ?? "");
  if (exited) info.exitCode = Number(exited[1]);
  return info;
}

/** Label filters for list and events: always scoped to what sessionpool manages. */
export function labelFilters(labels: Record<string, string>): string[] {
  const all = { ...labels, [LABEL_MANAGED]: MANAGED_VALUE };
  return Object.entries(all).map(([key, value]) => `${key}=${value}`);
}

/**
 * Dockerode options for a DOCKER_HOST string (unix:///path, tcp://host:port, http://host:port). Every
 * connection field is set explicitly, because docker-modem otherwise fills gaps from process.env.
 */
export function modemOptions(dockerHost: string | undefined): Docker.DockerOptions & { socketPath?: string } {
  const cleared = {
    socketPath: undefined,
    host: undefined,
    port: undefined,
    ca: undefined,
    cert: undefined,
    key: undefined,
    timeout: undefined,
  };
  const value = dockerHost === undefined || dockerHost === "" ? "unix:///var/run/docker.sock" : dockerHost;
  if (value.startsWith("unix://")) {
    return {
      ...cleared,
      socketPath: value.slice("unix://".length) || "/var/run/docker.sock",
      protocol: "http",
    };
  }
  if (value.startsWith("/")) return { ...cleared, socketPath: value, protocol: "http" };
  const withScheme = value.includes("://") ? value : `tcp://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (err) {
    throw new RuntimeUnavailableError(`DOCKER_HOST '${value}' is not a valid address`, err);
  }
  if (url.protocol !== "tcp:" && url.protocol !== "http:") {
    throw new RuntimeUnavailableError(
      `DOCKER_HOST '${value}' uses '${url.protocol}', which is not supported: use unix:///path or tcp://host:port`,
    );
  }
  return { ...cleared, host: url.hostname, port: url.port || "2375", protocol: "http" };
}

/** Short, stable name of the engine endpoint for messages. */
export function describeEndpoint(options: {
  socketPath?: string;
  host?: string;
  port?: number | string;
}): string {
  return options.socketPath !== undefined
    ? `unix://${options.socketPath}`
    : `tcp://${options.host}:${options.port}`;
}
