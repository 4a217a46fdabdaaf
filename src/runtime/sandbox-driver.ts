// The boundary between sessionpool and whatever runs sandboxes. Knows nothing of pools, sessions or ARM:
// core/ asks for a sandbox from a spec and gets back an id; drivers translate engine answers into RuntimeErrors.
import type { EngineRuntime } from "./sandbox-runtime.ts";

export interface RegistryAuth {
  server: string;
  username: string;
  password: string;
}

export interface SandboxSpec {
  /** Image reference, present locally or pullable. */
  image: string;
  /** Labels that own the sandbox; adoption and orphan removal find sandboxes by these (see labels.ts). */
  labels: Record<string, string>;
  env: Record<string, string>;
  /** Replaces the image's entrypoint when given. */
  command?: string[];
  /** Replaces the image's cmd when given. */
  args?: string[];
  /** CPU cores (0.25 = a quarter core). */
  cpu: number;
  memoryBytes: number;
  pidsLimit: number;
  /** "none": no interface but lo. "internal": reachable from this host only, no route out. "egress": outbound
   * allowed. Networked sandboxes never reach each other, the host's services or private ranges. */
  network: "none" | "internal" | "egress";
  /** "uid:gid" to run as; the image's USER when absent. */
  user?: string;
  readOnlyRootfs: boolean;
  /** Mount point -> size in bytes of a private tmpfs (noexec is not set: users run their own scripts). */
  tmpfs: Record<string, number>;
  /** Host directory bind-mounted read-only at `/run/sessionpool`: the server's socket the agent connects to. */
  agentSocketDir?: string;
  /** Port the sandbox serves HTTP on (custom containers); the driver reports an address to reach it. */
  targetPort?: number;
  /** Run a minimal init as PID 1 (reaps zombies, forwards signals). */
  init: boolean;
  /** A seccomp profile (OCI JSON) for the runtime to apply to the sandbox's processes; the engine's default when
   * absent. */
  seccompProfile?: string;
  /** OCI runtime name, e.g. "runsc" for gVisor; the engine default when absent. */
  runtime?: string;
}

export type SandboxState = "created" | "running" | "paused" | "restarting" | "exited" | "dead" | "removing";

export interface SandboxInfo {
  id: string;
  labels: Record<string, string>;
  state: SandboxState;
  /** Where targetPort is reachable from this host (e.g. the container's bridge address), when networked. */
  address?: string;
  exitCode?: number;
  startedAt?: Date;
  image: string;
}

export interface ImageInfo {
  id: string;
  ref: string;
  /** Image labels, e.g. our recipe hash and the runtimes/packages manifest. */
  labels: Record<string, string>;
  user?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
}

/** What a running sandbox has used, as the engine measures it. */
export interface SandboxUsage {
  /** CPU time used since the sandbox started, in seconds; null when the engine did not report it. */
  cpuSeconds: number | null;
  /** Memory in use now (reclaimable page cache excluded, as `docker stats` shows it); null when not reported. */
  memoryBytes: number | null;
}

export interface UsageOptions extends CallOptions {
  /** Deadline of the call (the driver's default when absent). */
  timeoutMs?: number;
}

export interface SandboxEvent {
  id: string;
  labels: Record<string, string>;
  /** "die" when the main process exited, "destroy" when the sandbox is gone. */
  type: "die" | "destroy" | "oom";
  exitCode?: number;
}

export interface SandboxDriver {
  readonly name: string;
  /** Resolves when the engine answers; rejects with RuntimeUnavailableError otherwise. */
  ping(options?: CallOptions): Promise<void>;
  /** The OCI runtimes the engine can run sandboxes under, with their arguments. */
  runtimes(options?: CallOptions): Promise<EngineRuntime[]>;
  /** Inspect a local image; undefined when absent. */
  getImage(ref: string, options?: CallOptions): Promise<ImageInfo | undefined>;
  /** Pull an image (with credentials when given); resolves with the local image. */
  pullImage(ref: string, auth?: RegistryAuth, options?: CallOptions): Promise<ImageInfo>;
  /** Create and start a sandbox. On any failure nothing is left behind. */
  create(spec: SandboxSpec, options?: CallOptions): Promise<SandboxInfo>;
  /** undefined when the sandbox does not exist. */
  inspect(id: string, options?: CallOptions): Promise<SandboxInfo | undefined>;
  /** Every sandbox (in any state) whose labels include all of `labels`. */
  list(labels: Record<string, string>, options?: CallOptions): Promise<SandboxInfo[]>;
  /** Kill and remove; idempotent (absent is success). */
  remove(id: string, options?: CallOptions): Promise<void>;
  /** Host-side statistics used by metrics and the benchmark. */
  memoryUsageBytes(id: string, options?: CallOptions): Promise<number | undefined>;
  /** CPU and memory the sandbox has used; undefined when it does not exist or is not running. Optional: a
   * driver without it reports no usage. */
  usage?(id: string, options?: UsageOptions): Promise<SandboxUsage | undefined>;
  /**
   * Subscribe to lifecycle events of sandboxes carrying `labels`; returns an unsubscribe function.
   * `onResubscribed` runs when the stream comes back after failing (the engine may have restarted and events
   * in between may be lost: callers re-list what they track).
   */
  watch(
    labels: Record<string, string>,
    onEvent: (event: SandboxEvent) => void,
    onResubscribed?: () => void,
  ): () => void;
  close(): Promise<void>;
}
