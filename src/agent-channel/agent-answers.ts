// What the agent's requests and answers look like to the server (docs/agent-protocol.md), and the shaping of what
// it sends: the agent lives next to the session's code, so every answer is checked field by field.

export interface AgentRequestOptions {
  signal?: AbortSignal;
  /** Deadline for the answer; each method has a default. */
  timeoutMs?: number;
}

/** Output of a streamed exec or shell command, as the agent reads it (docs/agent-protocol.md, "Streaming"). */
export interface OutputChunk {
  stream: "stdout" | "stderr";
  text: string;
}

export interface RunOptions extends AgentRequestOptions {
  /**
   * Called with the output as it is produced (the request is then sent with `"stream": true`); what it is given
   * adds up to the answer's stdout and stderr. It must not throw: an exception is dropped.
   */
  onOutput?: (chunk: OutputChunk) => void;
  /**
   * Called with each figure the code shows (plt.show()) as it is shown; only with onOutput (a streamed request).
   * What it is given comes first, in order, in the answer's images. It must not throw: an exception is dropped.
   */
  onImage?: (image: ExecImage) => void;
}

export interface HelloResponse {
  agent: string;
  version: string;
  /** The interpreter's pid; it changes when the interpreter is restarted. */
  pid: number;
  /** The sandbox has run something for a session (code, a command, a file, variables): it is nobody's to claim. */
  used: boolean;
}

export interface ExecRequest {
  code: string;
  timeoutMs: number;
  maxOutputChars: number;
}

export interface ExecImage {
  mime: "image/png";
  base64: string;
}

export interface ExecErrorInfo {
  name: string;
  message: string;
}

/** A last-expression value that is not a plain JSON scalar. */
export interface RichResult {
  repr: string;
  html?: string;
  /** base64 */
  png?: string;
}

export type ExecResultValue = null | number | string | boolean | RichResult;

export interface ExecResult {
  status: "Succeeded" | "Failed";
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  result: ExecResultValue;
  images: ExecImage[];
  error: ExecErrorInfo | null;
  timedOut: boolean;
  restarted: boolean;
  durationMs: number;
}

export interface ShellRequest {
  command?: string;
  argv?: string[];
  stdin?: string;
  timeoutMs: number;
  maxOutputChars: number;
}

export interface ShellResult {
  /** The process's exit code; null when it was killed by a signal (e.g. at the timeout). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
  durationMs: number;
}

export interface AgentFileEntry {
  name: string;
  /** Relative to /mnt/data; "" for the root. */
  directory: string;
  type: "file" | "directory";
  sizeBytes: number;
  modifiedAtMs: number;
}

export interface ReadFileResult {
  file: AgentFileEntry;
  data: Buffer;
}

export interface NameVersion {
  name: string;
  version: string;
}

export interface MetadataResponse {
  runtimes: NameVersion[];
  packages: NameVersion[];
  kernel: NameVersion;
}

/** What exec and shell answers share, each field of the documented type whatever the agent sent. */
export function outputOf(answer: Record<string, unknown>): Omit<ShellResult, "exitCode"> {
  return {
    stdout: typeof answer.stdout === "string" ? answer.stdout : "",
    stderr: typeof answer.stderr === "string" ? answer.stderr : "",
    stdoutTruncated: answer.stdoutTruncated === true,
    stderrTruncated: answer.stderrTruncated === true,
    timedOut: answer.timedOut === true,
    durationMs: typeof answer.durationMs === "number" ? answer.durationMs : 0,
  };
}

/** A last-expression value as documented: a JSON scalar, or a rich value with a string repr; null otherwise. */
export function resultValue(value: unknown): ExecResultValue {
  if (value === null || ["number", "string", "boolean"].includes(typeof value))
    return value as ExecResultValue;
  const rich = value as Partial<Record<keyof RichResult, unknown>> | undefined;
  if (typeof value !== "object" || typeof rich?.repr !== "string") return null;
  return {
    repr: rich.repr,
    ...(typeof rich.html === "string" ? { html: rich.html } : {}),
    ...(typeof rich.png === "string" ? { png: rich.png } : {}),
  };
}

/** An image as the agent sends it (an answer's images, an image partial), if it has the documented shape. */
export function imageOf(value: unknown): ExecImage | undefined {
  return typeof (value as ExecImage | null)?.base64 === "string"
    ? { mime: "image/png", base64: (value as ExecImage).base64 }
    : undefined;
}

/**
 * Hands a partial frame's output or shown figure to the caller, if it has the documented shape (the agent's own,
 * never the code's).
 */
export function deliverOutput(
  header: Record<string, unknown>,
  onOutput: (chunk: OutputChunk) => void,
  onImage: ((image: ExecImage) => void) | undefined,
): void {
  const { stream, text } = header;
  try {
    if ("image" in header) {
      const image = imageOf(header.image);
      if (image !== undefined) onImage?.(image);
      return;
    }
    if ((stream !== "stdout" && stream !== "stderr") || typeof text !== "string" || text === "") return;
    onOutput({ stream, text });
  } catch {
    // The reader's problem must not break the connection's frame parsing, nor the answer to come.
  }
}
