// What a pool's sandboxes look like: from the canonical pool to a driver SandboxSpec, plus a hash of everything
// that matters so a changed template rolls the warm sandboxes (allocated sessions keep running).
import { createHash } from "node:crypto";
import type { SandboxSpec } from "../../runtime/sandbox-driver.ts";
import type { RuntimeChoice, SandboxRuntimes } from "../../runtime/sandbox-runtime.ts";
import { RuntimeUnsupportedError } from "../errors.ts";
import type { PoolDoc, Probe } from "../pools/pool-doc.ts";
import { memoryToGi } from "../pools/pool-validation.ts";

export interface SandboxDefaults {
  /** Image for PythonLTS sessions (built by scripts/build-images.sh). */
  pythonImage: string;
  cpu: number;
  memoryBytes: number;
  pidsLimit: number;
  dataDirBytes: number;
  tmpBytes: number;
  /**
   * `--sandbox-runtime`: "auto" (gVisor when the engine has it, else runc), "runc", "runsc", or another engine
   * runtime's name; settled against the engine when it first answers (chooseSandboxRuntimes).
   */
  runtime: RuntimeChoice;
  /** Modules the Python interpreter imports before a session is handed out. */
  pythonPreload: string[];
}

export const DEFAULT_SANDBOX: SandboxDefaults = {
  pythonImage: "sessionpool/python:latest",
  cpu: 1,
  memoryBytes: 1024 * 1024 * 1024,
  pidsLimit: 256,
  dataDirBytes: 512 * 1024 * 1024,
  tmpBytes: 128 * 1024 * 1024,
  pythonPreload: [],
  runtime: "auto",
};

export const SANDBOX_UID = "1000:1000";

/** How the server talks to a session: through the in-sandbox agent, or by HTTP to the container's port. */
export type SandboxKind = "code-interpreter" | "custom";

export interface SandboxTemplate {
  kind: SandboxKind;
  /** The spec minus what differs per sandbox (labels, socket dir). */
  spec: Omit<SandboxSpec, "labels" | "agentSocketDir">;
  hash: string;
  /** Custom containers: the port that must accept connections, and the probes to run. */
  targetPort?: number;
  probes?: Probe[];
}

export class UnsupportedContainerTypeError extends Error {}

/** The interpreter the in-sandbox agent runs for each built-in container type. */
const KERNELS: Readonly<Record<string, string>> = { PythonLTS: "python", NodeLTS: "node", Shell: "shell" };

/** The image a pool's sandboxes run: ours for the built-in types, the pool's own for CustomContainer. */
export function imageRefFor(doc: PoolDoc, defaults: SandboxDefaults): string {
  const p = doc.properties;
  if (p.containerType === "CustomContainer") return p.customContainerTemplate?.containers[0]?.image ?? "";
  // One built-in image serves the interpreters: Python, Node.js and the shell (the agent picks the kernel).
  if (p.containerType in KERNELS) return defaults.pythonImage;
  throw new UnsupportedContainerTypeError(
    `containerType '${p.containerType}' sessions are not available on this server; PythonLTS, NodeLTS, Shell and CustomContainer pools are.`,
  );
}

/**
 * The sandbox for a pool. `imageId` is the resolved local image; `secrets` are the pool's secret values, used
 * only to resolve `secretRef` environment variables here, at sandbox creation.
 */
export function templateFor(
  doc: PoolDoc,
  defaults: SandboxDefaults,
  runtimes: SandboxRuntimes,
  imageId: string,
  secrets: ReadonlyMap<string, string> = new Map(),
): SandboxTemplate {
  const p = doc.properties;
  imageRefFor(doc, defaults); // refuses types this server cannot run
  const network = p.sessionNetworkConfiguration.status === "EgressEnabled" ? "egress" : undefined;
  const unavailable = runtimeUnavailable(doc, runtimes);
  if (unavailable !== undefined) throw new RuntimeUnsupportedError(unavailable);
  if (p.containerType === "CustomContainer") {
    const c = p.customContainerTemplate!.containers[0]!;
    const env: Record<string, string> = {};
    for (const e of c.env ?? [])
      env[e.name] = e.secretRef === undefined ? (e.value ?? "") : (secrets.get(e.secretRef) ?? "");
    const spec: SandboxTemplate["spec"] = {
      image: imageId,
      env,
      ...(c.command ? { command: c.command } : {}),
      ...(c.args ? { args: c.args } : {}),
      cpu: c.resources?.cpu ?? defaults.cpu,
      memoryBytes: memoryBytes(c.resources?.memory, defaults.memoryBytes),
      pidsLimit: defaults.pidsLimit * 4 + runtimes.pidsOverhead,
      // Reachable from this server only when egress is off; never from other sessions or to the host.
      network: network ?? "internal",
      readOnlyRootfs: false,
      tmpfs: {},
      targetPort: p.customContainerTemplate!.ingress.targetPort,
      init: true,
      ...(runtimes.networked ? { runtime: runtimes.networked } : {}),
      ...(runtimes.seccompProfile ? { seccompProfile: runtimes.seccompProfile } : {}),
    };
    return {
      kind: "custom",
      spec,
      hash: hashOf(spec),
      targetPort: p.customContainerTemplate!.ingress.targetPort,
      probes: c.probes ?? [],
    };
  }
  const spec: SandboxTemplate["spec"] = {
    image: imageId,
    env: {
      SESSIONPOOL_KERNEL: KERNELS[p.containerType] ?? "python",
      SESSIONPOOL_PRELOAD: p.containerType === "PythonLTS" ? defaults.pythonPreload.join(",") : "",
      SESSIONPOOL_FORK_KERNEL: runtimes.forkInterpreter ? "1" : "0",
      MPLBACKEND: "Agg",
      HOME: "/tmp",
      MPLCONFIGDIR: "/tmp/matplotlib",
      // numpy/scipy may use as many BLAS threads as the sandbox has cores, no more.
      OPENBLAS_NUM_THREADS: String(Math.max(1, Math.ceil(defaults.cpu))),
      OMP_NUM_THREADS: String(Math.max(1, Math.ceil(defaults.cpu))),
    },
    cpu: defaults.cpu,
    memoryBytes: defaults.memoryBytes,
    pidsLimit: defaults.pidsLimit + runtimes.pidsOverhead,
    network: network ?? "none",
    user: SANDBOX_UID,
    readOnlyRootfs: true,
    tmpfs: { "/mnt/data": defaults.dataDirBytes, "/tmp": defaults.tmpBytes },
    init: true,
  };
  const runtime = network ? runtimes.networked : runtimes.isolated;
  if (runtime !== undefined) spec.runtime = runtime;
  if (runtimes.seccompProfile !== undefined) spec.seccompProfile = runtimes.seccompProfile;
  return { kind: "code-interpreter", spec, hash: hashOf(spec) };
}

/** Whether a pool's sandboxes need a network interface (egress, or a custom container's ingress). */
export function needsNetwork(doc: PoolDoc): boolean {
  const p = doc.properties;
  return p.containerType === "CustomContainer" || p.sessionNetworkConfiguration.status === "EgressEnabled";
}

/** Why the pool cannot run under the server's sandbox runtime here, naming the runtime; undefined when it can. */
export function runtimeUnavailable(doc: PoolDoc, runtimes: SandboxRuntimes): string | undefined {
  if (!needsNetwork(doc) || runtimes.networkedUnavailable === undefined) return undefined;
  const what =
    doc.properties.containerType === "CustomContainer" ? "CustomContainer pools" : "EgressEnabled pools";
  return `${what} cannot run under the sandbox runtime '${runtimes.name}' on this server: ${runtimes.networkedUnavailable}`;
}

/** The memory limit of each of a pool's sandboxes. */
export function sessionMemoryBytes(doc: PoolDoc, defaults: SandboxDefaults): number {
  const p = doc.properties;
  if (p.containerType !== "CustomContainer") return defaults.memoryBytes;
  return memoryBytes(p.customContainerTemplate?.containers[0]?.resources?.memory, defaults.memoryBytes);
}

function hashOf(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, 16);
}

/** Container resources as bytes, for custom containers ("0.5Gi" -> 536870912). */
export function memoryBytes(text: string | undefined, fallback: number): number {
  const gi = text === undefined ? undefined : memoryToGi(text);
  return gi === undefined ? fallback : Math.round(gi * 1024 * 1024 * 1024);
}
