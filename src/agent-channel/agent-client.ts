// The host side of docs/agent-protocol.md: requests pipelined over one attached agent's connection.
import type { Socket } from "node:net";
import {
  type AgentFileEntry,
  type AgentRequestOptions,
  deliverOutput,
  type ExecErrorInfo,
  type ExecRequest,
  type ExecResult,
  type HelloResponse,
  imageOf,
  type MetadataResponse,
  type NameVersion,
  outputOf,
  type ReadFileResult,
  type RunOptions,
  resultValue,
  type ShellRequest,
  type ShellResult,
} from "./agent-answers.ts";
import { AgentRequestError, AgentTimeoutError, AgentUnavailableError } from "./errors.ts";

export type {
  AgentFileEntry,
  AgentRequestOptions,
  ExecErrorInfo,
  ExecImage,
  ExecRequest,
  ExecResult,
  ExecResultValue,
  HelloResponse,
  MetadataResponse,
  NameVersion,
  OutputChunk,
  ReadFileResult,
  RichResult,
  RunOptions,
  ShellRequest,
  ShellResult,
} from "./agent-answers.ts";

const DEFAULT_HELLO_TIMEOUT_MS = 30_000;
const DEFAULT_FILE_TIMEOUT_MS = 60_000;
/** Setting variables is bookkeeping in the agent (the interpreter gets them with its next cell). */
const DEFAULT_ENV_TIMEOUT_MS = 10_000;
const DEFAULT_METADATA_TIMEOUT_MS = 60_000;
const DEFAULT_USAGE_TIMEOUT_MS = 5_000;
/** Past an exec's own timeout: the agent's 2 s interrupt grace plus an interpreter restart. */
const EXEC_DEADLINE_SLACK_MS = 15_000;
const MAX_PAYLOAD_BYTES = 0xffff_ffff;
const FRAME_PREFIX_BYTES = 8;
/**
 * The largest frame the agent sends: a header with two output streams of 16 Mi characters each (JSON-escaped)
 * and a 16 MiB result, a payload of one file of at most 1 GiB. Larger means the agent is broken or not ours: it
 * may not make the server buffer more.
 */
const MAX_INCOMING_HEADER_BYTES = 256 << 20;
const MAX_INCOMING_PAYLOAD_BYTES = 1 << 30;

/** An errno code for a caller-facing message: the socket's host path is not the caller's business. */
function errnoOf(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.name;
}

interface Frame {
  header: Record<string, unknown>;
  payload: Buffer;
}

interface Pending {
  resolve: (frame: Frame) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  onPartial: ((header: Record<string, unknown>) => void) | undefined;
}

export class AgentClient {
  #socket: Socket;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Bytes needed before the next parse attempt is worth making. */
  #need = FRAME_PREFIX_BYTES;
  #closedError: AgentUnavailableError | undefined;

  /** Speaks the protocol on a connected socket (an attached agent's, see AgentEndpoint). */
  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (err) => {
      this.#closeWith(
        new AgentUnavailableError(`the connection to the session's agent failed (${errnoOf(err)})`, err),
      );
    });
    socket.on("close", () => {
      this.#closeWith(new AgentUnavailableError("the session's agent closed the connection"));
    });
  }

  get closed(): boolean {
    return this.#closedError !== undefined;
  }

  /** Answers once the interpreter is loaded and has run a no-op. */
  async hello(options: AgentRequestOptions = {}): Promise<HelloResponse> {
    const { header } = await this.#request({ op: "hello" }, undefined, options, DEFAULT_HELLO_TIMEOUT_MS);
    return {
      agent: header.agent as string,
      version: header.version as string,
      pid: header.pid as number,
      used: header.used === true,
    };
  }

  async exec(request: ExecRequest, options: RunOptions = {}): Promise<ExecResult> {
    const answer = await this.#run({ op: "exec", ...request }, request.timeoutMs, options);
    // The value, images and error come from the interpreter, where the session's code can write its own
    // messages: keep only what has the documented shape.
    const error = answer.error as ExecErrorInfo | null | undefined;
    return {
      ...outputOf(answer),
      status: answer.status === "Succeeded" ? "Succeeded" : "Failed",
      result: resultValue(answer.result),
      images: (Array.isArray(answer.images) ? (answer.images as unknown[]) : []).flatMap((i) => {
        const image = imageOf(i);
        return image === undefined ? [] : [image];
      }),
      error:
        error !== null && typeof error === "object"
          ? { name: String(error.name), message: String(error.message) }
          : null,
      restarted: answer.restarted === true,
    };
  }

  /** Runs a shell command (Shell pools): `command` through `bash -c`, or `argv` as given, in /mnt/data. */
  async shell(request: ShellRequest, options: RunOptions = {}): Promise<ShellResult> {
    const answer = await this.#run({ op: "shell", ...request }, request.timeoutMs, options);
    return { ...outputOf(answer), exitCode: typeof answer.exitCode === "number" ? answer.exitCode : null };
  }

  /** exec and shell: the answer is the header itself, due a little after the run's own timeout. */
  async #run(
    header: Record<string, unknown>,
    timeoutMs: number,
    options: RunOptions,
  ): Promise<Record<string, unknown>> {
    const { onOutput, onImage } = options;
    if (onOutput !== undefined) header.stream = true;
    // Undefined fields (e.g. a shell request's absent stdin) vanish in JSON.stringify.
    const { header: answer } = await this.#request(
      header,
      undefined,
      options,
      timeoutMs + EXEC_DEADLINE_SLACK_MS,
      onOutput === undefined ? undefined : (partial) => deliverOutput(partial, onOutput, onImage),
    );
    return answer;
  }

  async listFiles(
    path = "",
    recursive = false,
    options: AgentRequestOptions = {},
  ): Promise<AgentFileEntry[]> {
    const { header } = await this.#request(
      { op: "files.list", path, recursive },
      undefined,
      options,
      DEFAULT_FILE_TIMEOUT_MS,
    );
    return header.files as AgentFileEntry[];
  }

  async statFile(path: string, options: AgentRequestOptions = {}): Promise<AgentFileEntry> {
    const { header } = await this.#request(
      { op: "files.stat", path },
      undefined,
      options,
      DEFAULT_FILE_TIMEOUT_MS,
    );
    return header.file as AgentFileEntry;
  }

  async readFile(path: string, options: AgentRequestOptions = {}): Promise<ReadFileResult> {
    const { header, payload } = await this.#request(
      { op: "files.read", path },
      undefined,
      options,
      DEFAULT_FILE_TIMEOUT_MS,
    );
    return { file: header.file as AgentFileEntry, data: payload };
  }

  /** Writes atomically (temp file + rename); missing parent directories are created. */
  async writeFile(
    path: string,
    data: Buffer,
    options: AgentRequestOptions & { overwrite?: boolean } = {},
  ): Promise<AgentFileEntry> {
    if (data.length > MAX_PAYLOAD_BYTES) {
      throw new RangeError(`data (${data.length} bytes) must be at most ${MAX_PAYLOAD_BYTES} bytes`);
    }
    const { header } = await this.#request(
      { op: "files.write", path, overwrite: options.overwrite ?? true },
      data,
      options,
      DEFAULT_FILE_TIMEOUT_MS,
    );
    return header.file as AgentFileEntry;
  }

  /**
   * Sets environment variables for the session: in the agent (what it starts later inherits them) and in the running
   * interpreter, without restarting it. The agent never logs or echoes the values.
   */
  async setEnvironment(variables: Record<string, string>, options: AgentRequestOptions = {}): Promise<void> {
    await this.#request({ op: "env.set", variables }, undefined, options, DEFAULT_ENV_TIMEOUT_MS);
  }

  async deleteFile(path: string, options: AgentRequestOptions = {}): Promise<void> {
    await this.#request({ op: "files.delete", path }, undefined, options, DEFAULT_FILE_TIMEOUT_MS);
  }

  async metadata(options: AgentRequestOptions = {}): Promise<MetadataResponse> {
    const { header } = await this.#request(
      { op: "metadata" },
      undefined,
      options,
      DEFAULT_METADATA_TIMEOUT_MS,
    );
    return {
      runtimes: header.runtimes as NameVersion[],
      packages: header.packages as NameVersion[],
      kernel: header.kernel as NameVersion,
    };
  }

  /**
   * Bytes in use in the session's data dir (/mnt/data: statvfs of its tmpfs). undefined from an agent older than
   * the op (an adopted sandbox of an earlier image), which refuses it as unknown.
   */
  async dataDirUsedBytes(options: AgentRequestOptions = {}): Promise<number | undefined> {
    try {
      const { header } = await this.#request({ op: "usage" }, undefined, options, DEFAULT_USAGE_TIMEOUT_MS);
      const used = header.dataDirUsedBytes;
      return typeof used === "number" && Number.isFinite(used) ? used : undefined;
    } catch (err) {
      if (err instanceof AgentRequestError && err.agentCode === "BadRequest") return undefined;
      throw err;
    }
  }

  /** Closes the connection; pending requests reject with AgentUnavailableError. Safe to call twice. */
  close(): void {
    this.#closeWith(
      new AgentUnavailableError("the connection to the session's agent was closed by the server"),
    );
  }

  #request(
    fields: Record<string, unknown>,
    payload: Buffer | undefined,
    options: AgentRequestOptions,
    defaultTimeoutMs: number,
    onPartial?: (header: Record<string, unknown>) => void,
  ): Promise<Frame> {
    if (this.#closedError !== undefined) return Promise.reject(this.#closedError);
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.#nextId++;
    fields.id = id;
    const json = JSON.stringify(fields);
    const headerBytes = Buffer.byteLength(json);
    const prefix = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + headerBytes);
    prefix.writeUInt32BE(headerBytes, 0);
    prefix.writeUInt32BE(payload?.length ?? 0, 4);
    prefix.write(json, FRAME_PREFIX_BYTES, "utf8");
    const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;

    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(
          id,
          new AgentTimeoutError(
            `the agent did not answer ${fields.op as string} within ${timeoutMs} ms`,
            timeoutMs,
          ),
        );
      }, timeoutMs);
      const onAbort = signal === undefined ? undefined : (): void => this.#settle(id, signal.reason);
      if (signal !== undefined && onAbort !== undefined)
        signal.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, { resolve, reject, timer, signal, onAbort, onPartial });
      if (payload !== undefined && payload.length > 0) {
        this.#socket.cork();
        this.#socket.write(prefix);
        this.#socket.write(payload);
        this.#socket.uncork();
      } else {
        this.#socket.write(prefix);
      }
    });
  }

  /** Removes a pending request; resolves it with `frame`, or rejects it with `err`. */
  #settle(id: number, err: unknown, frame?: Frame): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return; // already answered, timed out or aborted
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (pending.onAbort !== undefined) pending.signal?.removeEventListener("abort", pending.onAbort);
    if (frame !== undefined) pending.resolve(frame);
    else pending.reject(err);
  }

  #onData(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered < this.#need) return;
    const buf = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks, this.#buffered);
    let offset = 0;
    this.#need = FRAME_PREFIX_BYTES;
    while (buf.length - offset >= FRAME_PREFIX_BYTES) {
      const headerBytes = buf.readUInt32BE(offset);
      const payloadBytes = buf.readUInt32BE(offset + 4);
      if (headerBytes > MAX_INCOMING_HEADER_BYTES || payloadBytes > MAX_INCOMING_PAYLOAD_BYTES) {
        this.#closeWith(
          new AgentUnavailableError(
            `the session's agent announced a frame of ${headerBytes} + ${payloadBytes} bytes, more than an agent sends`,
          ),
        );
        return;
      }
      const total = FRAME_PREFIX_BYTES + headerBytes + payloadBytes;
      if (buf.length - offset < total) {
        this.#need = total;
        break;
      }
      const headerStart = offset + FRAME_PREFIX_BYTES;
      const payloadStart = headerStart + headerBytes;
      offset += total;
      this.#onFrame(buf, headerStart, payloadStart, offset);
      if (this.#closedError !== undefined) return;
    }
    if (offset === buf.length) {
      this.#chunks = [];
      this.#buffered = 0;
    } else {
      const rest = offset === 0 ? buf : buf.subarray(offset);
      this.#chunks = [rest];
      this.#buffered = rest.length;
    }
  }

  #onFrame(buf: Buffer, headerStart: number, payloadStart: number, end: number): void {
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(buf.toString("utf8", headerStart, payloadStart)) as Record<string, unknown>;
      if (header === null || typeof header !== "object" || Array.isArray(header))
        throw new TypeError("the header is not a JSON object");
    } catch (err) {
      this.#closeWith(new AgentUnavailableError("the session's agent sent a malformed frame", err));
      return;
    }
    const id = header.id as number;
    if (header.partial === true) {
      // Output before the answer; the request stays pending. Dropped when nobody asked (or waits) for it.
      this.#pending.get(id)?.onPartial?.(header);
      return;
    }
    if (header.ok === true) {
      this.#settle(id, undefined, { header, payload: buf.subarray(payloadStart, end) });
    } else {
      const error = (header.error ?? {}) as { code?: string; message?: string };
      this.#settle(
        id,
        new AgentRequestError(error.code ?? "Internal", error.message ?? "the agent reported an error"),
      );
    }
  }

  #closeWith(err: AgentUnavailableError): void {
    if (this.#closedError !== undefined) return;
    this.#closedError = err;
    this.#socket.destroy();
    this.#chunks = [];
    this.#buffered = 0;
    for (const id of [...this.#pending.keys()]) this.#settle(id, err);
  }
}
