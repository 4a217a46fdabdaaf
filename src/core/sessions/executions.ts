// Code executions: run code in a session's interpreter (sync or in the background) and remember the outcome so
// `GET /executions/{id}` can answer. Records live in memory for an hour; a restart forgets them. One execution
// runs at a time per session; the others wait in a bounded line (execution-queue.ts).
import type {
  ExecImage,
  ExecResult,
  OutputChunk,
  RunOptions,
  ShellRequest,
  ShellResult,
} from "../../agent-channel/agent-client.ts";
import { ValidationError } from "../errors.ts";
import type { Metrics } from "../metrics.ts";
import { ExecutionQueue, type ExecutionQueueLimits } from "./execution-queue.ts";
import { agentOf, type LiveSandbox, type SessionManager } from "./session-manager.ts";

export const MAX_TIMEOUT_SECONDS = 220;

/**
 * The codes of an execution that ran but failed (its `error`, HTTP 200): the server's own, and the agent's
 * ResultTooLarge (its result and images were dropped). An exception raised by the code keeps its own name.
 */
export const EXECUTION_FAILURE_CODES = [
  "ExecutionTimeout",
  "InterpreterRestarted",
  "ExecutionFailed",
  "ResultTooLarge",
] as const;
export type ExecutionFailureCode = (typeof EXECUTION_FAILURE_CODES)[number];

export interface ExecutionInput {
  code: string;
  codeInputType: "Inline" | "InlineBase64" | "InlineText";
  executionType: "Synchronous" | "Asynchronous";
  timeoutInSeconds: number;
  maxOutputChars: number;
}

export interface ExecutionRecord {
  id: string;
  poolKey: string;
  identifier: string;
  executionType: "Synchronous" | "Asynchronous";
  /** A Shell pool's command or code in an interpreter: the two answer in different shapes. */
  kind: "code" | "shell";
  status: "Running" | "Succeeded" | "Failed";
  createdAt: number;
  result?: ExecResult;
  /** Shell pools: the command's outcome (status on the wire is its exit code). */
  shell?: ShellResult;
  /** Why the execution failed outside the code itself (timeout, interpreter restart, agent lost). */
  failure?: { code: ExecutionFailureCode; message: string };
  done: Promise<void>;
  /** Roughly what the finished record holds in memory (its output and result), for the retention budget. */
  bytes?: number;
}

const RETENTION_MS = 60 * 60 * 1000;
const MAX_RECORDS = 10_000;
/**
 * Finished executions are kept for GET /executions/{id}, but not beyond this many bytes of output and results
 * in all: each may hold up to 2 x 10 M characters of output and a 16 MiB result, and the server's memory must not
 * grow with what callers print. The oldest finished ones go first.
 */
const MAX_RETAINED_BYTES = 256 * 1024 * 1024;

export interface StartOptions {
  /**
   * The execution's output as it is produced (a streamed execution); the outcome is the record's all the same.
   * Called from the moment the execution reaches the interpreter, never after `record.done`.
   */
  onOutput?: (chunk: OutputChunk) => void;
  /**
   * Code executions with onOutput: each figure the code shows (plt.show()) as it is shown. They are the first of the
   * result's images, in order; the figures left open at the end follow.
   */
  onImage?: (image: ExecImage) => void;
}

export interface ExecutionsOptions extends Partial<ExecutionQueueLimits> {
  /** Bytes of output and results kept for GET /executions/{id} in all (default MAX_RETAINED_BYTES). */
  maxRetainedBytes?: number;
}

export class Executions {
  /** Keyed by pool, identifier and id together (recordKey): an id names an execution in one session only. */
  readonly #records = new Map<string, ExecutionRecord>();
  #retainedBytes = 0;
  readonly #maxRetainedBytes: number;
  readonly #sessions: SessionManager;
  readonly #metrics: Metrics;
  readonly #queue: ExecutionQueue<LiveSandbox>;

  constructor(sessions: SessionManager, metrics: Metrics, options: ExecutionsOptions = {}) {
    this.#sessions = sessions;
    this.#metrics = metrics;
    const { maxRetainedBytes, ...limits } = options;
    this.#maxRetainedBytes = maxRetainedBytes ?? MAX_RETAINED_BYTES;
    this.#queue = new ExecutionQueue<LiveSandbox>(limits);
  }

  /**
   * Starts an execution, or queues it behind the session's running one; for Synchronous ones, await `record.done`
   * before answering. Throws ExecutionQueueFull (429) or ServerBusy (503) when it may not wait.
   */
  start(
    live: LiveSandbox,
    input: ExecutionInput,
    id: string = crypto.randomUUID(),
    options: StartOptions = {},
  ): ExecutionRecord {
    // Only these are kept while the execution waits: never `input`, which holds the request's code a second time.
    const { timeoutInSeconds, maxOutputChars } = input;
    let code: string | undefined =
      input.codeInputType === "InlineBase64"
        ? Buffer.from(input.code, "base64").toString("utf8")
        : input.code;
    return this.#run(
      live,
      id,
      "code",
      input.executionType,
      Buffer.byteLength(code),
      "The session's interpreter could not run the code",
      (record) => {
        // Not an async function: its suspended frame would keep the code alive until the answer comes.
        const sent = agentOf(live).exec(
          { code: code ?? "", timeoutMs: timeoutInSeconds * 1000, maxOutputChars },
          runOptions(options),
        );
        code = undefined;
        return sent.then((result) => {
          record.result = result;
          record.status = result.status;
          if (result.timedOut) {
            record.failure = {
              code: "ExecutionTimeout",
              message: `The execution exceeded timeoutInSeconds (${timeoutInSeconds}) and was interrupted${result.restarted ? "; the interpreter ignored the interrupt and was restarted, so variables were lost (files are kept)" : "; the session's state is kept"}.`,
            };
          } else if (result.restarted) {
            record.failure = {
              code: "InterpreterRestarted",
              message:
                "The interpreter exited during the execution and was restarted; variables were lost (files are kept).",
            };
          }
          return result.durationMs;
        });
      },
    );
  }

  /** Runs a Shell pool's command, or queues it behind the session's running one; synchronous only. */
  startShell(
    live: LiveSandbox,
    input: ShellInput,
    id: string = crypto.randomUUID(),
    options: StartOptions = {},
  ): ExecutionRecord {
    const { timeoutInSeconds, ...rest } = input;
    let request: ShellRequest | undefined = { ...rest, timeoutMs: timeoutInSeconds * 1000 };
    const bytes =
      Buffer.byteLength(rest.command ?? "") +
      Buffer.byteLength(rest.stdin ?? "") +
      (rest.argv ?? []).reduce((sum, a) => sum + Buffer.byteLength(a), 0);
    return this.#run(
      live,
      id,
      "shell",
      "Synchronous",
      bytes,
      "The session could not run the command",
      (record) => {
        const sent = agentOf(live).shell(
          request!,
          options.onOutput === undefined ? {} : { onOutput: options.onOutput },
        );
        request = undefined;
        return sent.then((shell) => {
          record.shell = shell;
          record.status = shell.exitCode === 0 ? "Succeeded" : "Failed";
          if (shell.timedOut) {
            record.failure = {
              code: "ExecutionTimeout",
              message: `The command exceeded timeoutInSeconds (${timeoutInSeconds}) and was killed.`,
            };
          }
          return shell.durationMs;
        });
      },
    );
  }

  /**
   * The shared life of an execution record: refuse an id this session used already, wait for the session's turn
   * (holding `waitingBytes` of code meanwhile, within the queue's limits), run `body` (which fills in the outcome
   * and returns the duration), map a failure to reach the agent, time it, and restart the session's idle clock.
   */
  #run(
    live: LiveSandbox,
    id: string,
    kind: ExecutionRecord["kind"],
    executionType: ExecutionRecord["executionType"],
    waitingBytes: number,
    failurePrefix: string,
    body: (record: ExecutionRecord) => Promise<number>,
  ): ExecutionRecord {
    const poolKey = live.rec.poolKey;
    const identifier = live.rec.identifier ?? "";
    const key = recordKey(poolKey, identifier, id);
    if (this.#records.has(key)) {
      throw new ValidationError(
        "DuplicateOperationId",
        `An execution with operation-id '${id}' already exists.`,
        "operation-id",
      );
    }
    // Throws, holding nothing, when the line is full; nothing below throws before `done` takes the claim over.
    const turn = this.#queue.enter(live, poolKey, identifier, waitingBytes);
    const record: ExecutionRecord = {
      id,
      poolKey,
      identifier,
      executionType,
      kind,
      status: "Running",
      createdAt: Date.now(),
      done: Promise.resolve(),
    };
    record.done = (async () => {
      try {
        if (turn !== undefined) await turn;
        const durationMs = await body(record);
        this.#metrics.executionSeconds.observe(
          { pool: record.poolKey, status: record.status },
          durationMs / 1000,
        );
      } catch (err) {
        record.status = "Failed";
        record.failure = { code: "ExecutionFailed", message: `${failurePrefix}: ${(err as Error).message}` };
      } finally {
        this.#queue.leave(live);
        // The session was in use until now: the idle clock starts when the execution ends.
        if (this.#sessions.find(record.poolKey, record.identifier) === live) this.#sessions.touch(live);
        if (this.#records.get(key) === record) {
          record.bytes = retainedSize(record);
          this.#retainedBytes += record.bytes;
          this.#evict();
        }
      }
    })();
    this.#evict();
    this.#records.set(key, record);
    return record;
  }

  /** The execution `id` of this pool's session `identifier`; another pool's or session's is not seen. */
  get(poolKey: string, identifier: string, id: string): ExecutionRecord | undefined {
    return this.#records.get(recordKey(poolKey, identifier, id));
  }

  /** Forgets the oldest finished records while there are too many, too old, or too many bytes of them. */
  #evict(): void {
    const cutoff = Date.now() - RETENTION_MS;
    for (const [key, r] of this.#records) {
      const over = this.#records.size >= MAX_RECORDS || this.#retainedBytes > this.#maxRetainedBytes;
      if (!over && r.createdAt > cutoff) break;
      if (r.status === "Running") continue;
      this.#records.delete(key);
      this.#retainedBytes -= r.bytes ?? 0;
    }
  }

  /** Bytes of finished records kept for GET /executions/{id} (for tests and metrics). */
  get retainedBytes(): number {
    return this.#retainedBytes;
  }

  /** Executions accepted but not yet handed to their session's agent, and the bytes of code they hold. */
  get waiting(): { executions: number; bytes: number } {
    return this.#queue.waiting;
  }
}

/**
 * Callers choose execution ids (the operation-id header), so an id is only unique within one session of one
 * pool: a holder of another pool's token must neither see nor block this one's. Identifiers cannot hold NUL.
 */
function recordKey(poolKey: string, identifier: string, id: string): string {
  return `${poolKey}\u0000${identifier}\u0000${id}`;
}

/**
 * Two bytes a character (JavaScript strings), for the output, the result and its images, and the id (a caller's
 * operation-id may be kilobytes long). Only strings count, and nothing here may throw: what comes back is shaped by
 * code in the sandbox, which can write its own messages.
 */
function retainedSize(record: ExecutionRecord): number {
  const len = (v: unknown) => (typeof v === "string" ? v.length : 0);
  const out = (record.result ?? record.shell) as Partial<ExecResult> | undefined;
  let chars = record.id.length + len(out?.stdout) + len(out?.stderr);
  const value = record.result?.result as unknown;
  if (typeof value === "string") chars += value.length;
  else if (value !== null && typeof value === "object") {
    const rich = value as Record<string, unknown>;
    chars += len(rich["repr"]) + len(rich["html"]) + len(rich["png"]);
  }
  const images = record.result?.images as unknown;
  if (Array.isArray(images))
    for (const image of images) chars += len((image as { base64?: unknown })?.base64);
  return chars * 2;
}

/** Reads the execution request in either generation's shape (flat, or wrapped in `properties` as the CLI sends). */
export function parseExecutionInput(
  body: unknown,
  options: { defaultMaxOutputChars: number },
): ExecutionInput {
  const get = bodyFields(body);

  const code = get("code");
  if (typeof code !== "string") {
    throw new ValidationError("InvalidExecutionRequest", "'code' is required and must be a string.", "code");
  }
  const inputType = enumOf(
    get("codeInputType") ?? "Inline",
    ["Inline", "InlineBase64", "InlineText"],
    "codeInputType",
  );
  const executionType = enumOf(
    get("executionType") ?? "Synchronous",
    ["Synchronous", "Asynchronous"],
    "executionType",
  );
  const timeout = parseTimeout(get("timeoutInSeconds") ?? 60);
  const maxOutputChars = parseMaxOutput(get("outputStreamsMaxLength"), options.defaultMaxOutputChars);
  for (const shellOnly of ["shellCommand", "execCommandAndArgs", "stdin"]) {
    if (get(shellOnly) !== undefined) {
      throw new ValidationError(
        "InvalidExecutionRequest",
        `'${shellOnly}' is only for Shell session pools.`,
        shellOnly,
      );
    }
  }
  return {
    code,
    codeInputType: inputType as ExecutionInput["codeInputType"],
    executionType: executionType as ExecutionInput["executionType"],
    timeoutInSeconds: timeout,
    maxOutputChars,
  };
}

export interface ShellInput {
  command?: string;
  argv?: string[];
  stdin?: string;
  timeoutInSeconds: number;
  maxOutputChars: number;
}

/** A Shell pool's request: exactly one of shellCommand and execCommandAndArgs, optional stdin. */
export function parseShellInput(body: unknown, options: { defaultMaxOutputChars: number }): ShellInput {
  const get = bodyFields(body);
  for (const codeOnly of ["codeInputType", "executionType", "code"]) {
    if (get(codeOnly) !== undefined) {
      throw new ValidationError(
        "InvalidExecutionRequest",
        `Shell session pools take 'shellCommand' or 'execCommandAndArgs', not '${codeOnly}'.`,
        codeOnly,
      );
    }
  }
  const command = get("shellCommand");
  const argv = get("execCommandAndArgs");
  if ((command === undefined) === (argv === undefined)) {
    throw new ValidationError(
      "InvalidExecutionRequest",
      "A Shell execution needs exactly one of 'shellCommand' (a string for bash -c) and 'execCommandAndArgs' (an array).",
      "shellCommand",
    );
  }
  // NUL cannot pass through exec(2), and an empty program name runs nothing: refused here, not by the sandbox.
  if (command !== undefined && (typeof command !== "string" || command.includes("\0"))) {
    throw new ValidationError(
      "InvalidExecutionRequest",
      "'shellCommand' must be a string without NUL characters.",
      "shellCommand",
    );
  }
  if (
    argv !== undefined &&
    (!Array.isArray(argv) ||
      argv.length === 0 ||
      argv[0] === "" ||
      !argv.every((a) => typeof a === "string" && !a.includes("\0")))
  ) {
    throw new ValidationError(
      "InvalidExecutionRequest",
      "'execCommandAndArgs' must be a non-empty array of strings without NUL characters, the first one a program name.",
      "execCommandAndArgs",
    );
  }
  const stdin = get("stdin");
  if (stdin !== undefined && typeof stdin !== "string") {
    throw new ValidationError("InvalidExecutionRequest", "'stdin' must be a string.", "stdin");
  }
  return {
    ...(command === undefined ? {} : { command: command as string }),
    ...(argv === undefined ? {} : { argv: argv as string[] }),
    ...(stdin === undefined ? {} : { stdin }),
    timeoutInSeconds: parseTimeout(get("timeoutInSeconds") ?? 60),
    maxOutputChars: parseMaxOutput(get("outputStreamsMaxLength"), options.defaultMaxOutputChars),
  };
}

/**
 * Reads a request body in either shape clients send: the fields themselves, or wrapped in `properties` (as the
 * az CLI does); field names in any letter case.
 */
function bodyFields(body: unknown): (name: string) => unknown {
  const outer = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const inner = Object.entries(outer).find(([k]) => k.toLowerCase() === "properties")?.[1];
  const src = typeof inner === "object" && inner !== null ? (inner as Record<string, unknown>) : outer;
  return (name) => Object.entries(src).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
}

function parseMaxOutput(raw: unknown, fallback: number): number {
  if (raw === undefined) return fallback;
  if (typeof raw !== "number" || !Number.isInteger(raw) || raw < 0 || raw > 10_000_000) {
    throw new ValidationError(
      "InvalidExecutionRequest",
      `'outputStreamsMaxLength' must be a whole number from 0 to 10000000 (got ${JSON.stringify(raw)}).`,
      "outputStreamsMaxLength",
    );
  }
  return raw;
}

function parseTimeout(timeoutRaw: unknown): number {
  const timeout =
    typeof timeoutRaw === "string" && /^\d+$/.test(timeoutRaw) ? Number(timeoutRaw) : timeoutRaw;
  if (
    typeof timeout !== "number" ||
    !Number.isInteger(timeout) ||
    timeout < 1 ||
    timeout > MAX_TIMEOUT_SECONDS
  ) {
    throw new ValidationError(
      "InvalidExecutionRequest",
      `'timeoutInSeconds' must be a whole number from 1 to ${MAX_TIMEOUT_SECONDS} (got ${JSON.stringify(timeoutRaw)}).`,
      "timeoutInSeconds",
    );
  }
  return timeout;
}

function enumOf(value: unknown, allowed: string[], name: string): string {
  const match =
    typeof value === "string" ? allowed.find((a) => a.toLowerCase() === value.toLowerCase()) : undefined;
  if (!match) {
    throw new ValidationError(
      "InvalidExecutionRequest",
      `'${name}' is ${JSON.stringify(value)}; allowed values are ${allowed.join(", ")} (any letter case).`,
      name,
    );
  }
  return match;
}

/** What the agent is asked for: output and shown figures as they come only when someone reads them. */
function runOptions(options: StartOptions): RunOptions {
  if (options.onOutput === undefined) return {};
  return options.onImage === undefined
    ? { onOutput: options.onOutput }
    : { onOutput: options.onOutput, onImage: options.onImage };
}
