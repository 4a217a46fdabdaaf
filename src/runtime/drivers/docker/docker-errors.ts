// The one place where what dockerode throws becomes a runtime error, and where every engine call gets its
// deadline: the caller's signal and a timeout, raced so a hung engine can never hang a caller.
import { isSessionPoolError } from "../../../errors.ts";
import { RuntimeUnavailableError } from "../../errors.ts";
import type { CallOptions } from "../../sandbox-driver.ts";

/** Socket-level failures that mean "the engine is not there", not "the engine said no". */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ENOENT",
  "EACCES",
  "EPERM",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNABORTED",
]);

interface DockerodeError {
  statusCode?: number;
  code?: string;
  message?: string;
  json?: unknown;
}

export function statusCodeOf(err: unknown): number | undefined {
  const status = (err as DockerodeError | undefined)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

export function isUnreachable(err: unknown): boolean {
  const code = (err as DockerodeError | undefined)?.code;
  return typeof code === "string" && UNREACHABLE_CODES.has(code) && statusCodeOf(err) === undefined;
}

/** The engine's own words: its JSON `message` when it sent one, else dockerode's message without the prefix. */
export function engineMessage(err: unknown): string {
  const e = err as DockerodeError | undefined;
  const json = e?.json;
  if (json && typeof json === "object" && "message" in json && typeof json.message === "string") {
    return json.message.trim();
  }
  const message = typeof e?.message === "string" ? e.message : String(err);
  // dockerode: "(HTTP code 404) no such container - No such container: abc "
  return message.replace(/^\(HTTP code \d+\) [^-]*- /, "").trim();
}

export interface DeadlineContext {
  /** What the call does, for messages: "creating a sandbox". */
  what: string;
  timeoutMs: number;
  endpoint: string;
}

/**
 * Runs `fn` with a signal that fires on the caller's abort or after `timeoutMs`, and translates failures:
 * the caller's own abort rethrows its reason; the deadline and an unreachable socket become
 * RuntimeUnavailableError; a SessionPoolError passes through; anything else goes to `onEngineError`.
 */
export async function callEngine<T>(
  context: DeadlineContext,
  options: CallOptions | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
  onEngineError: (err: unknown) => Error,
): Promise<T> {
  const callerSignal = options?.signal;
  callerSignal?.throwIfAborted();
  const timeout = AbortSignal.timeout(context.timeoutMs);
  const signal = callerSignal ? AbortSignal.any([callerSignal, timeout]) : timeout;
  try {
    return await raceSignal(fn(signal), signal);
  } catch (err) {
    if (callerSignal?.aborted) throw callerSignal.reason;
    if (timeout.aborted) {
      throw new RuntimeUnavailableError(
        `the docker engine at ${context.endpoint} did not finish ${context.what} within ${context.timeoutMs} ms`,
        err,
      );
    }
    throw translate(context, err, onEngineError);
  }
}

/** Settles with `work`, or rejects with the signal's reason as soon as it aborts (for calls that ignore it). */
export function raceSignal<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  work.catch(() => {});
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  });
}

function translate(context: DeadlineContext, err: unknown, onEngineError: (err: unknown) => Error): Error {
  if (isSessionPoolError(err)) return err;
  if (isUnreachable(err)) {
    const code = (err as DockerodeError).code;
    return new RuntimeUnavailableError(
      `the docker engine at ${context.endpoint} is unreachable (${code}) while ${context.what}`,
      err,
    );
  }
  return onEngineError(err);
}

/** For calls whose engine refusals are not the caller's fault: the engine is in trouble. */
export function unavailable(context: DeadlineContext): (err: unknown) => Error {
  return (err) =>
    new RuntimeUnavailableError(
      `the docker engine at ${context.endpoint} failed ${context.what}: ${engineMessage(err)}`,
      err,
    );
}
