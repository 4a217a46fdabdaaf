// Waiting for ARM long-running operations as az does: poll Azure-AsyncOperation until its status is terminal
// (or Location until it stops answering 202), honouring Retry-After, bounded by --timeout. On a terminal a
// one-line progress display on stderr; on a pipe, silence.
import { OperationFailedError, OperationTimeoutError } from "./errors.ts";
import { type HttpClient, type HttpResponse, parseJson } from "./http-client.ts";

export const DEFAULT_POLL_INTERVAL_MS = 1000;
export const DEFAULT_TIMEOUT_SECONDS = 1800;

export interface WaitOptions {
  /** e.g. "Provisioning pool1"; shown in progress and in a timeout message. */
  label: string;
  timeoutMs: number;
  progress?: Progress;
  /** Extra text for the progress line, e.g. "ready sessions 3/5"; failures are ignored. */
  detail?: () => Promise<string | undefined>;
}

/**
 * Waits for the operation a 201/202 response started. Returns the final Location response when the operation
 * was followed by Location (its body, if any, is the result), otherwise undefined.
 */
export async function waitForOperation(
  client: HttpClient,
  started: HttpResponse,
  o: WaitOptions,
): Promise<HttpResponse | undefined> {
  const asyncUrl = started.headers["azure-asyncoperation"];
  const locationUrl = started.headers["location"];
  if (!asyncUrl && !locationUrl) return undefined;
  const startedAt = Date.now();
  const deadline = startedAt + o.timeoutMs;
  let wait = 0;
  try {
    for (;;) {
      if (wait > 0) await sleep(Math.min(wait, Math.max(0, deadline - Date.now())));
      if (Date.now() > deadline) {
        throw new OperationTimeoutError(
          `${o.label} did not finish within ${Math.round(o.timeoutMs / 1000)} s; it goes on on the server. Check it with 'sessionpool show'.`,
        );
      }
      if (asyncUrl) {
        const res = await client.request("GET", asyncUrl);
        const body = (parseJson(res) ?? {}) as {
          status?: string;
          error?: { code?: string; message?: string };
        };
        const status = body.status ?? "InProgress";
        if (/^succeeded$/i.test(status)) return undefined;
        if (/^(failed|canceled|cancelled)$/i.test(status)) {
          throw new OperationFailedError(
            body.error?.code ?? status,
            body.error?.message ?? `the operation ended with status ${status}.`,
          );
        }
        await show(o, startedAt, status);
        wait = retryAfterMs(res) ?? DEFAULT_POLL_INTERVAL_MS;
      } else {
        const res = await client.request("GET", locationUrl!, { allow: [202] });
        if (res.status !== 202) return res;
        await show(o, startedAt, "InProgress");
        wait = retryAfterMs(res) ?? DEFAULT_POLL_INTERVAL_MS;
      }
    }
  } finally {
    o.progress?.clear();
  }
}

async function show(o: WaitOptions, startedAt: number, status: string): Promise<void> {
  if (!o.progress?.enabled) return;
  let detail: string | undefined;
  try {
    detail = await o.detail?.();
  } catch {
    detail = undefined;
  }
  const elapsed = Math.round((Date.now() - startedAt) / 1000);
  o.progress.update(`${o.label}: ${status}, ${elapsed} s${detail ? `, ${detail}` : ""}`);
}

/** Retry-After in seconds or as an HTTP date, else retry-after-ms / x-ms-retry-after-ms. */
export function retryAfterMs(res: HttpResponse): number | undefined {
  const ra = res.headers["retry-after"];
  if (ra !== undefined) {
    if (/^\d+$/.test(ra.trim())) return Number(ra.trim()) * 1000;
    const date = Date.parse(ra);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  const msHeader = res.headers["retry-after-ms"] ?? res.headers["x-ms-retry-after-ms"];
  if (msHeader !== undefined && /^\d+$/.test(msHeader.trim())) return Number(msHeader.trim());
  return undefined;
}

/** A single status line rewritten in place on a terminal. */
export class Progress {
  readonly enabled: boolean;
  readonly #write: (text: string) => void;
  #shown = false;

  constructor(enabled: boolean, write: (text: string) => void = (t) => process.stderr.write(t)) {
    this.enabled = enabled;
    this.#write = write;
  }

  update(text: string): void {
    if (!this.enabled) return;
    this.#write(`\r\x1b[2K${text}`);
    this.#shown = true;
  }

  clear(): void {
    if (this.#shown) this.#write("\r\x1b[2K");
    this.#shown = false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
