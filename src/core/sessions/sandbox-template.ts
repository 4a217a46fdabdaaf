// What a pool's sandboxes look like: from the canonical pool to a driver SandboxSpec, plus a hash of everything
// that matters so a changed template rolls the warm members (allocated sessions keep running).
import { createHash } from "node:crypto";
import type { SandboxSpec } from "../../runtime/sandbox-driver.ts";
import type { PoolDoc } from "../pools/pool-doc.ts";
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

export interface SandboxTemplate {
  kind: "code-interpreter";
  /** The spec minus what differs per sandbox (labels, socket dir). */
  spec: Omit<SandboxSpec, "labels" | "agentSocketDir">;
  hash: string;
}

export class UnsupportedContainerTypeError extends Error {}

export function templateFor(doc: PoolDoc, defaults: SandboxDefaults, imageId: string): SandboxTemplate {
  const p = doc.properties;
  if (p.containerType !== "PythonLTS") {
    throw new UnsupportedContainerTypeError(
      `containerType '${p.containerType}' sessions are not available on this server yet; PythonLTS pools are.`,
    );
  }
  const spec: SandboxTemplate["spec"] = {
    image: imageId,
    env: {
      SESSIONPOOL_PRELOAD: defaults.pythonPreload.join(","),
      MPLBACKEND: "Agg",
      HOME: "/tmp",
      MPLCONFIGDIR: "/tmp/matplotlib",
    },
    cpu: defaults.cpu,
    memoryBytes: defaults.memoryBytes,
    pidsLimit: defaults.pidsLimit,
    network: p.sessionNetworkConfiguration.status === "EgressEnabled" ? "egress" : "none",
    user: SANDBOX_UID,
    readOnlyRootfs: true,
    tmpfs: { "/mnt/data": defaults.dataDirBytes, "/tmp": defaults.tmpBytes },
    init: true,
    ...(defaults.runtime ? { runtime: defaults.runtime } : {}),
  };
  return { kind: "code-interpreter", spec, hash: hashOf(spec) };
}

function hashOf(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, 16);
}

/** Container resources as bytes, for custom containers ("0.5Gi" -> 536870912). */
export function memoryBytes(text: string | undefined, fallback: number): number {
  const gi = text === undefined ? undefined : memoryToGi(text);
  return gi === undefined ? fallback : Math.round(gi * 1024 * 1024 * 1024);
}
