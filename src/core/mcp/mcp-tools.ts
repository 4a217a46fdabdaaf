// The tools a pool's MCP server offers, with Azure's names and argument shapes (launchShell,
// runShellCommandInRemoteEnvironment, runPythonCodeInRemoteEnvironment), plus JavaScript for NodeLTS pools and
// file tools over /mnt/data. An environment is a session of the pool: its state lasts between calls until the
// pool's lifecycle ends it. Tool failures are tool results (isError), never protocol errors: the model reads them.
import type { Logger } from "pino";
import type { ExecResult, OutputChunk } from "../../agent-channel/agent-client.ts";
import { isSessionPoolError } from "../../errors.ts";
import type { StoredPool } from "../../store/store.ts";
import { type ContainerType, poolDocOf } from "../pools/pool-doc.ts";
import type { Executions, StartOptions } from "../sessions/executions.ts";
import { MAX_TIMEOUT_SECONDS } from "../sessions/executions.ts";
import { contentTypeOf, DATA_ROOT, sessionPath } from "../sessions/file-paths.ts";
import { agentOf, type LiveSandbox, type SessionManager } from "../sessions/session-manager.ts";
import {
  DEFAULT_TIMEOUT_SECONDS,
  type McpCaller,
  type ToolContent,
  type ToolDefinition,
  type ToolResult,
  toolsFor,
} from "./mcp-tool-catalogue.ts";

export type { McpCaller, ToolContent, ToolDefinition, ToolResult } from "./mcp-tool-catalogue.ts";

/** Output kept per stream: enough for a model to read, bounded so one call cannot flood its context. */
const MAX_OUTPUT_CHARS = 100_000;
/** Files returned inline by downloadFile; larger ones are refused with a message that says how big they are. */
const MAX_DOWNLOAD_BYTES = 8 * 1024 * 1024;
/** The prefix of the session identifiers MCP environments get (4-128 characters, as every identifier). */
const ENVIRONMENT_PREFIX = "mcp-";

/** How a call reports on itself while it runs. */
export interface CallOptions {
  /**
   * The output of a code or shell tool as it is produced (the MCP transport turns it into progress
   * notifications). What it is given adds up to the result's stdout and stderr, cut at the same limit.
   */
  onOutput?: (chunk: OutputChunk) => void;
}

/** Arguments that break a tool's input schema: a JSON-RPC -32602, not a tool result. */
export class ToolArgumentsError extends Error {}

/** A tool that does not exist for this pool: a JSON-RPC -32602 as well. */
export class UnknownToolError extends Error {}

function text(value: string): ToolContent {
  return { type: "text", text: value };
}

function toolError(message: string): ToolResult {
  return { content: [text(message)], isError: true };
}

type Args = Record<string, unknown>;

function stringArg(args: Args, name: string, required: true): string;
function stringArg(args: Args, name: string, required: false): string | undefined;
function stringArg(args: Args, name: string, required: boolean): string | undefined {
  const v = args[name];
  if (v === undefined && !required) return undefined;
  if (typeof v !== "string" || (required && v === "")) {
    throw new ToolArgumentsError(`'${name}' must be a${required ? " non-empty" : ""} string.`);
  }
  return v;
}

function timeoutArg(args: Args): number {
  const v = args["timeoutInSeconds"] ?? DEFAULT_TIMEOUT_SECONDS;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_TIMEOUT_SECONDS) {
    throw new ToolArgumentsError(
      `'timeoutInSeconds' must be a whole number from 1 to ${MAX_TIMEOUT_SECONDS}.`,
    );
  }
  return v;
}

export class McpTools {
  readonly #sessions: SessionManager;
  readonly #executions: Executions;
  readonly #logger: Logger;
  /** The environments each credential holder launched (pruned of ended ones at each launch). */
  readonly #launched = new Map<string, Set<string>>();

  constructor(deps: { sessions: SessionManager; executions: Executions; logger: Logger }) {
    this.#sessions = deps.sessions;
    this.#executions = deps.executions;
    this.#logger = deps.logger;
  }

  list(pool: StoredPool): ToolDefinition[] {
    return toolsFor(poolDocOf(pool).properties.containerType);
  }

  /** Runs tool `name`; logs the call without its arguments' values (code and file contents may hold secrets). */
  async call(name: string, args: Args, caller: McpCaller, options: CallOptions = {}): Promise<ToolResult> {
    const type = poolDocOf(caller.pool).properties.containerType;
    if (!toolsFor(type).some((t) => t.name === name)) {
      throw new UnknownToolError(`Unknown tool '${name}'; tools/list names this pool's tools.`);
    }
    const started = performance.now();
    let result: ToolResult;
    try {
      result = await this.#run(name, args, caller, type, startOptions(options));
    } catch (err) {
      if (!isSessionPoolError(err)) throw err;
      // A coded error (session limit, bad path, file not found, ...) says what to do: the model reads it.
      result = toolError(err.message);
    }
    this.#logger.info(
      {
        pool: caller.pool.key,
        tool: name,
        argumentNames: Object.keys(args),
        environmentId: typeof args["environmentId"] === "string" ? args["environmentId"] : undefined,
        isError: result.isError === true,
        durationMs: Math.round(performance.now() - started),
      },
      "mcp tools/call",
    );
    return result;
  }

  /** Ends the environments `ids` (an MCP session that was deleted); those already gone are skipped. */
  async end(poolKey: string, ids: Iterable<string>): Promise<void> {
    for (const id of ids) await this.#sessions.stop(poolKey, id, "mcp session ended");
  }

  async #run(
    name: string,
    args: Args,
    caller: McpCaller,
    type: ContainerType,
    stream: StartOptions,
  ): Promise<ToolResult> {
    switch (name) {
      case "launchShell":
      case "launchPythonEnvironment":
        return this.#launch(caller);
      case "runShellCommandInRemoteEnvironment":
        return this.#shell(args, caller, stream);
      case "runPythonCodeInRemoteEnvironment": {
        const code = stringArg(args, "pythonCode", true);
        if (type === "PythonLTS" || type === "GpuBase") return this.#code(args, caller, code, stream);
        // No Python interpreter in this session kind: a python3 process per call reads the code on stdin.
        return this.#shellRun(args, caller, { argv: ["python3", "-"], stdin: code }, stream);
      }
      case "runJavaScriptCodeInRemoteEnvironment":
        return this.#code(args, caller, stringArg(args, "javaScriptCode", true), stream);
      case "uploadFileToRemoteEnvironment":
        return this.#upload(args, caller);
      case "listFilesInRemoteEnvironment":
        return this.#list(args, caller);
      default:
        return this.#download(args, caller);
    }
  }

  async #launch(caller: McpCaller): Promise<ToolResult> {
    const poolKey = caller.pool.key;
    const max = poolDocOf(caller.pool).properties.scaleConfiguration.maxConcurrentSessions;
    const mine = this.#launched.get(caller.holder) ?? new Set<string>();
    for (const id of mine) if (!this.#sessions.find(poolKey, id)) mine.delete(id);
    if (mine.size >= max) {
      return toolError(
        `This credential already has ${mine.size} live environments, the pool's maxConcurrentSessions (${max}); reuse one of them, or wait for one to end (the pool's cooldown ends idle ones).`,
      );
    }
    const environmentId = `${ENVIRONMENT_PREFIX}${crypto.randomUUID()}`;
    await this.#sessions.acquire(poolKey, environmentId);
    mine.add(environmentId);
    this.#launched.set(caller.holder, mine);
    caller.environments?.add(environmentId);
    return {
      content: [text(JSON.stringify({ environmentId }))],
      structuredContent: { environmentId },
    };
  }

  /** The live session `environmentId` names, or a tool error telling the model to launch again. */
  #environment(args: Args, caller: McpCaller): LiveSandbox | ToolResult {
    const id = stringArg(args, "environmentId", true);
    const live = this.#sessions.find(caller.pool.key, id);
    if (!live) {
      return toolError(
        `The environment '${id}' does not exist or has ended (environments end after the pool's cooldown or lifetime); call launchShell to launch a new one.`,
      );
    }
    return live;
  }

  async #shell(args: Args, caller: McpCaller, stream: StartOptions): Promise<ToolResult> {
    const command = stringArg(args, "shellCommand", false);
    const argv = args["execCommandAndArgs"];
    if ((command === undefined) === (argv === undefined)) {
      throw new ToolArgumentsError(
        "Give exactly one of 'shellCommand' (a string) and 'execCommandAndArgs' (an array).",
      );
    }
    if (
      argv !== undefined &&
      (!Array.isArray(argv) ||
        argv.length === 0 ||
        !argv.every((a) => typeof a === "string" && !a.includes("\0")))
    ) {
      throw new ToolArgumentsError("'execCommandAndArgs' must be a non-empty array of strings.");
    }
    if (command?.includes("\0")) throw new ToolArgumentsError("'shellCommand' may not contain NUL.");
    return this.#shellRun(
      args,
      caller,
      command === undefined ? { argv: argv as string[] } : { command },
      stream,
    );
  }

  async #shellRun(
    args: Args,
    caller: McpCaller,
    what: { command?: string; argv?: string[]; stdin?: string },
    stream: StartOptions,
  ): Promise<ToolResult> {
    const timeoutInSeconds = timeoutArg(args);
    const live = this.#environment(args, caller);
    if (!("rec" in live)) return live;
    const record = this.#executions.startShell(
      live,
      { ...what, timeoutInSeconds, maxOutputChars: MAX_OUTPUT_CHARS },
      undefined,
      stream,
    );
    await record.done;
    const shell = record.shell;
    const structured = {
      stdout: shell?.stdout ?? "",
      stderr: shell?.stderr ?? "",
      exitCode: shell?.exitCode ?? null,
      ...(record.failure ? { error: record.failure.message } : {}),
    };
    const lines = [
      structured.stdout,
      structured.stderr === "" ? "" : `stderr:\n${structured.stderr}`,
      `exit code: ${structured.exitCode ?? "none (killed)"}`,
      record.failure ? record.failure.message : "",
    ].filter((l) => l !== "");
    return {
      content: [text(lines.join("\n"))],
      structuredContent: structured,
      ...(record.failure ? { isError: true } : {}),
    };
  }

  async #code(args: Args, caller: McpCaller, code: string, stream: StartOptions): Promise<ToolResult> {
    const timeoutInSeconds = timeoutArg(args);
    const live = this.#environment(args, caller);
    if (!("rec" in live)) return live;
    const record = this.#executions.start(
      live,
      {
        code,
        codeInputType: "Inline",
        executionType: "Synchronous",
        timeoutInSeconds,
        maxOutputChars: MAX_OUTPUT_CHARS,
      },
      undefined,
      stream,
    );
    await record.done;
    return codeResult(record.result, record.failure?.message);
  }

  async #upload(args: Args, caller: McpCaller): Promise<ToolResult> {
    const path = sessionPath(undefined, stringArg(args, "path", true));
    const content = stringArg(args, "content", false) ?? "";
    const encoding = args["encoding"] ?? "text";
    if (encoding !== "text" && encoding !== "base64") {
      throw new ToolArgumentsError("'encoding' must be 'text' or 'base64'.");
    }
    const live = this.#environment(args, caller);
    if (!("rec" in live)) return live;
    const data = encoding === "base64" ? Buffer.from(content, "base64") : Buffer.from(content, "utf8");
    const file = await agentOf(live).writeFile(path, data);
    this.#sessions.touch(live);
    const where = `${DATA_ROOT}/${[file.directory, file.name].filter((p) => p !== "").join("/")}`;
    return {
      content: [text(`Wrote ${file.sizeBytes} bytes to ${where}.`)],
      structuredContent: { path: where, sizeBytes: file.sizeBytes },
    };
  }

  async #list(args: Args, caller: McpCaller): Promise<ToolResult> {
    const dir = sessionPath(stringArg(args, "path", false));
    const recursive = args["recursive"] === true;
    const live = this.#environment(args, caller);
    if (!("rec" in live)) return live;
    const files = await agentOf(live).listFiles(dir, recursive);
    this.#sessions.touch(live);
    const entries = files.map((f) => ({
      path: `${DATA_ROOT}/${[f.directory, f.name].filter((p) => p !== "").join("/")}`,
      type: f.type,
      sizeBytes: f.sizeBytes,
      lastModifiedTime: new Date(f.modifiedAtMs).toISOString(),
    }));
    const listing = entries.map((e) => `${e.type === "directory" ? "d" : "-"} ${e.sizeBytes}\t${e.path}`);
    return {
      content: [text(listing.length === 0 ? "(no files)" : listing.join("\n"))],
      structuredContent: { files: entries },
    };
  }

  async #download(args: Args, caller: McpCaller): Promise<ToolResult> {
    const path = sessionPath(undefined, stringArg(args, "path", true));
    const live = this.#environment(args, caller);
    if (!("rec" in live)) return live;
    const agent = agentOf(live);
    const stat = await agent.statFile(path);
    if (stat.sizeBytes > MAX_DOWNLOAD_BYTES) {
      return toolError(
        `${DATA_ROOT}/${path} is ${stat.sizeBytes} bytes; downloadFile returns files up to ${MAX_DOWNLOAD_BYTES} bytes (use the data plane's /files/{name}/content for larger ones).`,
      );
    }
    const { file, data } = await agent.readFile(path);
    this.#sessions.touch(live);
    const mimeType = contentTypeOf(file.name);
    const uri = `file://${DATA_ROOT}/${path}`;
    if (mimeType.startsWith("image/")) {
      return { content: [{ type: "image", data: data.toString("base64"), mimeType }] };
    }
    const decoded = new TextDecoder("utf-8", { fatal: true });
    try {
      return { content: [text(decoded.decode(data))] };
    } catch {
      return {
        content: [{ type: "resource", resource: { uri, mimeType, blob: data.toString("base64") } }],
      };
    }
  }
}

/** Executions stream only when someone reads the output: the agent then sends it in frames as it comes. */
function startOptions(options: CallOptions): StartOptions {
  return options.onOutput === undefined ? {} : { onOutput: options.onOutput };
}

/** An interpreter's result as MCP content: output as text, figures and image results as image content. */
function codeResult(result: ExecResult | undefined, failure: string | undefined): ToolResult {
  const value = result?.result;
  const repr =
    value === null || value === undefined
      ? undefined
      : typeof value === "object"
        ? value.repr
        : JSON.stringify(value);
  const structured: Record<string, unknown> = {
    stdout: result?.stdout ?? "",
    stderr: result?.stderr ?? "",
    ...(repr === undefined ? {} : { result: repr }),
    ...(result?.error ? { error: `${result.error.name}: ${result.error.message}` } : {}),
    ...(failure ? { error: failure } : {}),
  };
  const lines = [
    String(structured["stdout"]),
    structured["stderr"] === "" ? "" : `stderr:\n${String(structured["stderr"])}`,
    repr === undefined ? "" : `result: ${repr}`,
    structured["error"] === undefined ? "" : `error: ${String(structured["error"])}`,
  ].filter((l) => l !== "");
  const images: ToolContent[] = (result?.images ?? []).map((i) => ({
    type: "image",
    data: i.base64,
    mimeType: i.mime,
  }));
  if (value !== null && typeof value === "object" && value.png) {
    images.push({ type: "image", data: value.png, mimeType: "image/png" });
  }
  return {
    content: [text(lines.length === 0 ? "(no output)" : lines.join("\n")), ...images],
    structuredContent: structured,
    ...(failure || result?.status === "Failed" ? { isError: true } : {}),
  };
}
