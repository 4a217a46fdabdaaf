// `sessionpool session ...`: the pool's data plane. Code-interpreter commands send exactly what
// `az containerapp session code-interpreter` sends; stop/list/show/delete use the session-management routes.
import { readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import {
  type CliContext,
  type CliWriters,
  DATA_PLANE_API_VERSION,
  STOP_SESSION_API_VERSION,
} from "../context.ts";
import { ApiError, UsageError } from "../errors.ts";
import { EventStreamParser } from "../event-stream.ts";
import { type HttpClient, parseJson } from "../http-client.ts";
import type { CommandResult, Row } from "../output.ts";
import { dataPlaneBase, type PoolRef, poolPath, poolTarget, type RefFlags } from "../pool-ref.ts";
import type { PoolResource } from "./pool-resource.ts";

export interface SessionFlags extends RefFlags {
  identifier?: string;
  poolEndpoint?: string;
}

export const DEFAULT_EXECUTION_TIMEOUT_SECONDS = 60;

interface Target {
  client: HttpClient;
  endpoint: string;
  ref: PoolRef;
}

/** The pool's data-plane base URL: --pool-endpoint, else the pool's poolManagementEndpoint. */
async function target(ctx: CliContext, f: SessionFlags): Promise<Target> {
  const ref = poolTarget(ctx, f);
  const client = ctx.client();
  if (f.poolEndpoint) return { client, ref, endpoint: f.poolEndpoint.replace(/\/+$/, "") };
  try {
    const pool = (await client.json("GET", poolPath(ref))) as PoolResource;
    const endpoint = pool.properties?.poolManagementEndpoint;
    if (!endpoint) throw new UsageError(`session pool ${ref.name} has no poolManagementEndpoint yet.`);
    return { client, ref, endpoint };
  } catch (err) {
    // A data-plane-only token (from get-token) may not read the pool over ARM; the server's own layout then.
    if (err instanceof ApiError && err.status === 403) {
      ctx.log.info(
        "this credential cannot read the pool over ARM; using the server's data-plane path for it.",
      );
      return { client, ref, endpoint: dataPlaneBase(client.endpoint, ref) };
    }
    throw err;
  }
}

function requireIdentifier(f: SessionFlags): string {
  if (f.identifier === undefined || f.identifier === "") {
    throw new UsageError("the following arguments are required: --identifier/-i (the session's identifier).");
  }
  return f.identifier;
}

function url(
  base: string,
  path: string,
  query: Record<string, string | undefined>,
  apiVersion: string,
): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, v);
  q.set("api-version", apiVersion);
  return `${base}${path}?${q.toString()}`;
}

/** az's extract_path_from_filename: a directory in --filename moves into --path. */
export function splitFilename(
  filename: string,
  path: string | undefined,
): { path?: string; filename: string } {
  const slash = filename.lastIndexOf("/");
  if (slash < 0) return { ...(path === undefined ? {} : { path }), filename };
  const dir = filename.slice(0, slash);
  const name = filename.slice(slash + 1);
  if (name === "") throw new UsageError(`--filename '${filename}' names a directory, not a file.`);
  return {
    path: path === undefined ? dir : `${path.replace(/\/+$/, "")}/${dir.replace(/^\/+/, "")}`,
    filename: name,
  };
}

// ---- code interpreter ----

export async function execute(
  ctx: CliContext,
  f: SessionFlags & { code?: string; timeoutInSeconds?: number },
): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const code = readCode(f.code);
  const t = await target(ctx, f);
  const body = {
    properties: {
      identifier,
      codeInputType: "inline",
      executionType: "synchronous",
      timeoutInSeconds: f.timeoutInSeconds ?? DEFAULT_EXECUTION_TIMEOUT_SECONDS,
      code,
    },
  };
  const executions = url(t.endpoint, "/executions", { identifier }, DATA_PLANE_API_VERSION);
  // On a terminal, with no format asked for, the output is printed as the code produces it (docs/streaming.md);
  // anything else (a pipe, -o, --query) gets the execution's JSON, exactly as az prints it.
  const writers = ctx.writers;
  if (
    ctx.terminal.stdoutIsTTY === true &&
    writers !== undefined &&
    !ctx.output.explicit &&
    !ctx.output.query
  ) {
    return executeStreamed(t, executions, body, writers);
  }
  const value = await t.client.json("POST", executions, { json: body });
  return { value, table: executionRows };
}

/**
 * Prints stdout and stderr events as they come, then what they did not show: the value of the last expression,
 * and a failure the server added (a timeout). A server that answers JSON instead is printed as usual.
 */
async function executeStreamed(
  t: Target,
  target: string,
  body: unknown,
  writers: CliWriters,
): Promise<CommandResult> {
  let value: unknown;
  let streamedStderr = "";
  const parser = new EventStreamParser(({ event, data }) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch {
      return; // not an event of ours
    }
    const text = (parsed as { text?: unknown }).text;
    if (event === "stdout" && typeof text === "string") writers.stdout(text);
    else if (event === "stderr" && typeof text === "string") {
      streamedStderr += text;
      writers.stderr(text);
    } else if (event === "image") {
      const bytes = Buffer.byteLength(
        String((parsed as { base64Data?: unknown }).base64Data ?? ""),
        "base64",
      );
      writers.stderr(`[image: ${String((parsed as { mimeType?: unknown }).mimeType)}, ${bytes} bytes]\n`);
    } else if (event === "result") value = parsed;
  });
  const res = await t.client.request("POST", target, {
    json: body,
    headers: { accept: "text/event-stream, application/json;q=0.5" },
    onBodyChunk: (chunk, response) => {
      if (response.status < 300 && response.contentType.startsWith("text/event-stream")) parser.feed(chunk);
    },
  });
  if (!(res.headers["content-type"] ?? "").startsWith("text/event-stream")) {
    return { value: parseJson(res), table: executionRows };
  }
  const v = (value ?? {}) as { result?: { executionResult?: unknown }; error?: { message?: string } };
  const message = v.error?.message;
  if (message && !streamedStderr.includes(message)) writers.stderr(`${message}\n`);
  const result = v.result?.executionResult;
  const shown =
    result === undefined || result === null || result === ""
      ? ""
      : `${typeof result === "string" ? result : JSON.stringify(result)}\n`;
  return { value, table: executionRows, raw: shown };
}

function readCode(code: string | undefined): string {
  if (code === undefined) throw new UsageError("the following arguments are required: --code.");
  if (code === "-") return readFileSync(0, "utf8");
  if (code.startsWith("@")) {
    try {
      return readFileSync(code.slice(1), "utf8");
    } catch (err) {
      throw new UsageError(`--code ${code}: cannot read ${code.slice(1)}: ${(err as Error).message}`);
    }
  }
  return code;
}

export async function uploadFile(
  ctx: CliContext,
  f: SessionFlags & { filepath?: string; path?: string },
): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  if (f.filepath === undefined) throw new UsageError("the following arguments are required: --filepath.");
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(f.filepath);
  } catch (err) {
    throw new UsageError(
      `--filepath: cannot read ${f.filepath}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  if (!stat.isFile()) throw new UsageError(`--filepath: ${f.filepath} is not a file.`);
  const t = await target(ctx, f);
  const value = await t.client.json(
    "POST",
    url(t.endpoint, "/files", { path: f.path, identifier }, DATA_PLANE_API_VERSION),
    { file: { field: "file", path: f.filepath, filename: basename(f.filepath) } },
  );
  return { value, table: fileRows };
}

export async function listFiles(
  ctx: CliContext,
  f: SessionFlags & { path?: string },
): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const t = await target(ctx, f);
  const value = await t.client.json(
    "GET",
    url(t.endpoint, "/files", { identifier, path: f.path ?? "" }, DATA_PLANE_API_VERSION),
  );
  return { value, table: fileRows };
}

export async function showFileContent(
  ctx: CliContext,
  f: SessionFlags & { filename?: string; path?: string },
): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const file = fileArgs(f);
  const t = await target(ctx, f);
  const res = await t.client.request(
    "GET",
    url(
      t.endpoint,
      `/files/${encodeURIComponent(file.filename)}/content`,
      { path: file.path, identifier },
      DATA_PLANE_API_VERSION,
    ),
    { headers: { accept: "*/*" } },
  );
  return { value: res.body.toString("utf8"), raw: res.body };
}

export async function showFileMetadata(
  ctx: CliContext,
  f: SessionFlags & { filename?: string; path?: string },
): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const file = fileArgs(f);
  const t = await target(ctx, f);
  const value = await t.client.json(
    "GET",
    url(
      t.endpoint,
      `/files/${encodeURIComponent(file.filename)}`,
      { path: file.path, identifier },
      DATA_PLANE_API_VERSION,
    ),
  );
  return { value, table: fileRows };
}

export async function deleteFile(
  ctx: CliContext,
  f: SessionFlags & { filename?: string; path?: string },
): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const file = fileArgs(f);
  const t = await target(ctx, f);
  await t.client.request(
    "DELETE",
    url(
      t.endpoint,
      `/files/${encodeURIComponent(file.filename)}`,
      { path: file.path, identifier },
      DATA_PLANE_API_VERSION,
    ),
  );
  ctx.log.note(`File ${f.filename} successfully deleted`);
  return { value: undefined };
}

function fileArgs(f: { filename?: string; path?: string }): { path?: string; filename: string } {
  if (f.filename === undefined || f.filename === "") {
    throw new UsageError("the following arguments are required: --filename.");
  }
  return splitFilename(f.filename, f.path);
}

// ---- sessions ----

export async function listSessions(ctx: CliContext, f: SessionFlags): Promise<CommandResult> {
  const t = await target(ctx, f);
  const sessions: unknown[] = [];
  let next: string | undefined = url(t.endpoint, "/listSessions", {}, DATA_PLANE_API_VERSION);
  while (next) {
    const page = (await t.client.json("GET", next)) as { sessions?: unknown[]; nextLink?: string | null };
    sessions.push(...(page.sessions ?? []));
    next = page.nextLink ?? undefined;
  }
  return { value: sessions, table: sessionRows };
}

export async function showSession(ctx: CliContext, f: SessionFlags): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const t = await target(ctx, f);
  const value = await t.client.json(
    "GET",
    url(t.endpoint, "/session", { identifier }, DATA_PLANE_API_VERSION),
  );
  return { value, table: sessionRows };
}

export async function deleteSession(ctx: CliContext, f: SessionFlags): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const t = await target(ctx, f);
  await t.client.request("DELETE", url(t.endpoint, "/session", { identifier }, DATA_PLANE_API_VERSION));
  ctx.log.note(`Session ${identifier} successfully deleted`);
  return { value: undefined };
}

export async function stopSession(ctx: CliContext, f: SessionFlags): Promise<CommandResult> {
  const identifier = requireIdentifier(f);
  const t = await target(ctx, f);
  const res = await t.client.request(
    "POST",
    url(t.endpoint, "/.management/stopSession", { identifier }, STOP_SESSION_API_VERSION),
    { headers: { accept: "text/plain, application/json" } },
  );
  const text = res.body.toString("utf8");
  const message = res.headers["content-type"]?.includes("json") ? String(parseJson(res) ?? "") : text;
  return { value: { message: message.trim() }, raw: message.endsWith("\n") ? message : `${message}\n` };
}

// ---- tables ----

function executionRows(value: unknown): Row[] {
  const v = (value ?? {}) as {
    status?: string;
    result?: {
      stdout?: string;
      stderr?: string;
      executionResult?: unknown;
      executionTimeInMilliseconds?: number;
    };
  };
  return [
    {
      Status: v.status,
      Stdout: v.result?.stdout,
      Stderr: v.result?.stderr,
      Result: v.result?.executionResult,
      TimeMs: v.result?.executionTimeInMilliseconds,
    },
  ];
}

function fileRows(value: unknown): Row[] {
  const v = value as { value?: unknown[] } | undefined;
  const files = (Array.isArray(v?.value) ? v.value : [value]) as {
    name?: string;
    type?: string;
    sizeInBytes?: number;
    lastModifiedAt?: string;
    directory?: string;
  }[];
  return files.map((file) => ({
    Name: file.name,
    Type: file.type,
    SizeInBytes: file.sizeInBytes,
    LastModifiedAt: file.lastModifiedAt,
    Directory: file.directory,
  }));
}

function sessionRows(value: unknown): Row[] {
  const list = (Array.isArray(value) ? value : [value]) as {
    identifier?: string;
    createdAt?: string;
    lastAccessedAt?: string;
    expireAt?: string;
  }[];
  return list.map((s) => ({
    Identifier: s.identifier,
    CreatedAt: s.createdAt,
    LastAccessedAt: s.lastAccessedAt,
    ExpireAt: s.expireAt,
  }));
}
