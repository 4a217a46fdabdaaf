// Data-plane response bodies, in each generation's shape.
import type { AgentFileEntry, ExecResult, ExecResultValue } from "../../agent-channel/agent-client.ts";
import type { ExecutionRecord } from "../../core/sessions/executions.ts";
import { contentTypeOf } from "../../core/sessions/file-paths.ts";
import type { LiveSandbox, SessionUsage } from "../../core/sessions/session-manager.ts";

/** A last-expression value as the legacy API's `result`: JSON scalars as they are, rich values by repr. */
function legacyResult(result: ExecResult | undefined): unknown {
  if (!result) return "";
  const image = result.images[0];
  if (image) return { type: "image", format: "png", base64_data: image.base64 };
  return plainValue(result.result);
}

function plainValue(value: ExecResultValue): unknown {
  if (value === null) return "";
  if (typeof value === "object") return value.repr;
  return value;
}

export function legacyExecutionToWire(record: ExecutionRecord): Record<string, unknown> {
  const r = record.result;
  const stderr = withFailure(r?.stderr ?? "", record);
  return {
    $id: "1",
    properties: {
      $id: "2",
      status: record.status === "Succeeded" ? "Success" : "Failure",
      stdout: r?.stdout ?? "",
      stderr,
      result: legacyResult(r),
      executionTimeInMilliseconds: Math.round(r?.durationMs ?? 0),
    },
  };
}

export function executionToWire(record: ExecutionRecord): Record<string, unknown> {
  const r = record.result;
  const body: Record<string, unknown> = {
    id: record.id,
    identifier: record.identifier,
    executionType: record.executionType,
    status: record.status,
  };
  if (record.status === "Running") return body;
  if (record.kind === "shell") {
    // Shell pools: the status is the process's exit code, as a string ("Failed" when it never ran or was killed).
    const sh = record.shell;
    body["status"] = sh === undefined || sh.exitCode === null ? "Failed" : String(sh.exitCode);
    body["result"] = {
      stdout: sh?.stdout ?? "",
      stderr: sh ? sh.stderr : withFailure("", record),
      executionTimeInMilliseconds: Math.round(sh?.durationMs ?? 0),
      ...(sh?.stdoutTruncated ? { stdoutTruncated: true } : {}),
      ...(sh?.stderrTruncated ? { stderrTruncated: true } : {}),
    };
    if (record.failure) body["error"] = record.failure;
    return body;
  }
  body["result"] = {
    stdout: r?.stdout ?? "",
    stderr: withFailure(r?.stderr ?? "", record),
    executionResult: r ? plainValue(r.result) : "",
    executionTimeInMilliseconds: Math.round(r?.durationMs ?? 0),
    ...(r && r.images.length > 0
      ? { images: r.images.map((i) => ({ mimeType: i.mime, base64Data: i.base64 })) }
      : {}),
    ...(r && typeof r.result === "object" && r.result !== null
      ? {
          richResult: {
            "text/plain": r.result.repr,
            ...(r.result.html ? { "text/html": r.result.html } : {}),
            ...(r.result.png ? { "image/png": r.result.png } : {}),
          },
        }
      : {}),
    ...(r?.stdoutTruncated ? { stdoutTruncated: true } : {}),
    ...(r?.stderrTruncated ? { stderrTruncated: true } : {}),
  };
  if (record.failure) body["error"] = record.failure;
  else if (r?.error) body["error"] = { code: r.error.name, message: r.error.message };
  return body;
}

function withFailure(stderr: string, record: ExecutionRecord): string {
  if (!record.failure || stderr.includes(record.failure.message)) return stderr;
  return `${stderr}${stderr === "" || stderr.endsWith("\n") ? "" : "\n"}${record.failure.message}\n`;
}

export function fileToWire(f: AgentFileEntry): Record<string, unknown> {
  const isDir = f.type === "directory";
  return {
    name: f.name,
    type: isDir ? "directory" : "file",
    contentType: contentTypeOf(f.name, isDir),
    sizeInBytes: isDir ? 4096 : f.sizeBytes,
    lastModifiedAt: new Date(f.modifiedAtMs).toISOString(),
    directory: f.directory,
  };
}

export function fileToLegacyWire(f: AgentFileEntry, id: number): Record<string, unknown> {
  return {
    $id: String(id),
    properties: {
      $id: String(id + 1),
      filename: f.directory === "" ? f.name : `${f.directory}/${f.name}`,
      size: f.sizeBytes,
      lastModifiedTime: new Date(f.modifiedAtMs).toISOString(),
    },
  };
}

/** GET /session's `usage` (docs/session-usage.md); a number the server could not measure is null. */
export function usageToWire(u: SessionUsage): Record<string, unknown> {
  return {
    cpuSeconds: u.cpuSeconds,
    memoryBytes: u.memoryBytes,
    diskBytes: u.diskBytes,
    measuredAt: u.measuredAt.toISOString(),
  };
}

export function sessionToWire(m: LiveSandbox): Record<string, unknown> {
  return {
    identifier: m.rec.identifier,
    createdAt: m.rec.allocatedAt ?? m.rec.createdAt,
    lastAccessedAt: m.rec.lastAccessedAt ?? m.rec.allocatedAt ?? m.rec.createdAt,
    expireAt: m.rec.expiresAt,
    etag: m.sandboxId,
    // Names only: values (and secrets' values above all) are never echoed.
    ...(m.environment?.names.length
      ? { environmentVariables: m.environment.names.map((name) => ({ name })) }
      : {}),
  };
}
