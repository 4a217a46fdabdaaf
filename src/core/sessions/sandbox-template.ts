// What a pool's sandboxes look like: from the canonical pool to a driver SandboxSpec, plus a hash of everything
// that matters so a changed template rolls the warm members (allocated sessions keep running).
import { createHash } from "node:crypto";
import type { SandboxSpec } from "../../runtime/sandbox-driver.ts";
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
  /** OCI runtime for sandboxes (e.g. "runsc"); the engine's default when undefined. */
  runtime?: string;
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
  imageId: string,
  secrets: ReadonlyMap<string, string> = new Map(),
): SandboxTemplate {
  const p = doc.properties;
  imageRefFor(doc, defaults); // refuses types this server cannot run
  const network = p.sessionNetworkConfiguration.status === "EgressEnabled" ? "egress" : undefined;
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
      pidsLimit: defaults.pidsLimit * 4,
      // Reachable from this server only when egress is off; never from other sessions or to the host.
      network: network ?? "internal",
      readOnlyRootfs: false,
      tmpfs: {},
      targetPort: p.customContainerTemplate!.ingress.targetPort,
      init: true,
      ...(defaults.runtime ? { runtime: defaults.runtime } : {}),
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
      MPLBACKEND: "Agg",
      HOME: "/tmp",
      MPLCONFIGDIR: "/tmp/matplotlib",
      // numpy/scipy may use as many BLAS threads as the sandbox has cores, no more.
      OPENBLAS_NUM_THREADS: String(Math.max(1, Math.ceil(defaults.cpu))),
      OMP_NUM_THREADS: String(Math.max(1, Math.ceil(defaults.cpu))),
    },
    cpu: defaults.cpu,
    memoryBytes: defaults.memoryBytes,
    pidsLimit: defaults.pidsLimit,
    network: network ?? "none",
    user: SANDBOX_UID,
    readOnlyRootfs: true,
    tmpfs: { "/mnt/data": defaults.dataDirBytes, "/tmp": defaults.tmpBytes },
    init: true,
    ...(defaults.runtime ? { runtime: defaults.runtime } : {}),
  };
  return { kind: "code-interpreter", spec, hash: hashOf(spec) };
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
