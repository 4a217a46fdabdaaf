// The CLI's only way to the server: HTTP(S) with a bearer token, an optional extra CA to trust, --debug traces
// (method, URL, status, time; never the Authorization header) and error envelopes turned into ApiError.
// node:http(s) rather than a client library: a CLI starts once per command, and this loads in no time.
import { randomBytes } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import { ApiError, ConnectionError } from "./errors.ts";
import type { Logger } from "./logger.ts";

export interface HttpClientOptions {
  /** Where the server is, e.g. http://127.0.0.1:8080; relative paths are resolved against it. */
  endpoint: string;
  token: string;
  /** PEM text of a CA to trust besides the system's (a self-signed server's CA). */
  caPem?: string;
  caFile?: string;
  log: Logger;
  /** Longest wait for an answer (a code execution may run 220 s). */
  timeoutMs?: number;
}

/** A local file sent as the multipart/form-data part `field`, streamed from disk. */
export interface FileUpload {
  field: string;
  path: string;
  filename: string;
}

export interface RequestOptions {
  /** Sent as JSON. */
  json?: unknown;
  file?: FileUpload;
  headers?: Record<string, string>;
  /** Statuses to return instead of throwing (besides 2xx). */
  allow?: number[];
  /** Sees each piece of the response body as it arrives (a stream of events), besides the whole at the end. */
  onBodyChunk?: (chunk: Buffer, response: { status: number; contentType: string }) => void;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  url: string;
}

const TLS_TRUST_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_UNTRUSTED",
]);

export class HttpClient {
  readonly endpoint: string;
  readonly #token: string;
  readonly #log: Logger;
  readonly #caFile: string | undefined;
  readonly #timeoutMs: number;
  readonly #http = new http.Agent({ keepAlive: true });
  readonly #https: https.Agent;

  constructor(o: HttpClientOptions) {
    this.endpoint = o.endpoint.replace(/\/+$/, "");
    this.#token = o.token;
    this.#log = o.log;
    this.#caFile = o.caFile;
    this.#timeoutMs = o.timeoutMs ?? 300_000;
    // The extra CA is added to the system's roots, not put in their place; verification stays on.
    this.#https = new https.Agent({
      keepAlive: true,
      ...(o.caPem ? { ca: [...rootCertificates, o.caPem] } : {}),
    });
  }

  resolve(pathOrUrl: string): string {
    return /^https?:\/\//i.test(pathOrUrl) ? pathOrUrl : `${this.endpoint}${pathOrUrl}`;
  }

  async request(method: string, pathOrUrl: string, o: RequestOptions = {}): Promise<HttpResponse> {
    const url = this.resolve(pathOrUrl);
    const headers: Record<string, string | number> = {
      accept: "application/json",
      "user-agent": "sessionpool-cli",
      ...o.headers,
      authorization: `Bearer ${this.#token}`,
    };
    let body: Buffer | undefined;
    let upload: { pre: Buffer; post: Buffer; path: string } | undefined;
    if (o.json !== undefined) {
      body = Buffer.from(JSON.stringify(o.json));
      headers["content-type"] = "application/json";
    } else if (o.file) {
      const boundary = `----sessionpool${randomBytes(12).toString("hex")}`;
      const name = o.file.filename.replace(/["\r\n]/g, "_");
      const pre = Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${o.file.field}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      );
      const post = Buffer.from(`\r\n--${boundary}--\r\n`);
      upload = { pre, post, path: o.file.path };
      headers["content-type"] = `multipart/form-data; boundary=${boundary}`;
      headers["content-length"] = pre.length + statSync(o.file.path).size + post.length;
    }
    if (body) headers["content-length"] = body.length;
    const started = performance.now();
    let res: HttpResponse;
    try {
      res = await this.#send(method, url, headers, body, upload, o.onBodyChunk);
    } catch (err) {
      this.#log.debug(`${method} ${url} -> failed after ${ms(started)}: ${describe(err)}`);
      throw this.#connectionError(url, err);
    }
    const errorCode = res.headers["x-ms-error-code"] ? ` ${res.headers["x-ms-error-code"]}` : "";
    this.#log.debug(`${method} ${url} -> ${res.status}${errorCode} (${ms(started)})`);
    if (res.status >= 400 && !o.allow?.includes(res.status)) throw toApiError(res);
    return res;
  }

  #send(
    method: string,
    url: string,
    headers: Record<string, string | number>,
    body: Buffer | undefined,
    upload: { pre: Buffer; post: Buffer; path: string } | undefined,
    onBodyChunk?: RequestOptions["onBodyChunk"],
  ): Promise<HttpResponse> {
    const u = new URL(url);
    const secure = u.protocol === "https:";
    return new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(
        u,
        { method, headers, agent: secure ? this.#https : this.#http, timeout: this.#timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          const seen = {
            status: res.statusCode ?? 0,
            contentType: String(res.headers["content-type"] ?? ""),
          };
          res.on("data", (c: Buffer) => {
            chunks.push(c);
            onBodyChunk?.(c, seen);
          });
          res.on("error", reject);
          res.on("end", () => {
            const flat: Record<string, string> = {};
            for (const [k, v] of Object.entries(res.headers)) {
              if (v !== undefined) flat[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v);
            }
            resolve({ status: res.statusCode ?? 0, headers: flat, body: Buffer.concat(chunks), url });
          });
        },
      );
      req.on("error", reject);
      req.on("timeout", () =>
        req.destroy(
          Object.assign(new Error(`no answer within ${this.#timeoutMs / 1000} s`), { code: "ETIMEDOUT" }),
        ),
      );
      if (upload) {
        req.write(upload.pre);
        const file = createReadStream(upload.path);
        file.on("error", (err) => req.destroy(err));
        file.on("end", () => req.end(upload.post));
        file.pipe(req, { end: false });
      } else {
        req.end(body);
      }
    });
  }

  /** The JSON body of a request, or undefined for an empty body. */
  async json(method: string, pathOrUrl: string, o: RequestOptions = {}): Promise<unknown> {
    return parseJson(await this.request(method, pathOrUrl, o));
  }

  async close(): Promise<void> {
    this.#http.destroy();
    this.#https.destroy();
  }

  #connectionError(url: string, err: unknown): ConnectionError {
    const code = errorCode(err);
    const origin = new URL(url).origin;
    if (code && TLS_TRUST_CODES.has(code)) {
      return new ConnectionError(
        `the TLS certificate of ${origin} is not trusted (${code})${this.#caFile ? ` by ${this.#caFile}` : ""}. Pass --ca-file with the server's CA certificate (a server started with --tls-self-signed prints its path) or set SESSIONPOOL_CA_FILE.`,
        "CertificateNotTrusted",
      );
    }
    if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
      return new ConnectionError(
        `the TLS certificate of ${origin} is not valid for that host name; connect with a name the certificate covers.`,
        "CertificateNameMismatch",
      );
    }
    if (code === "ECONNREFUSED") {
      return new ConnectionError(
        `cannot connect to ${origin}: connection refused. Is the server running there? (endpoint from SESSIONPOOL_ENDPOINT or 'sessionpool login')`,
        "ConnectionRefused",
      );
    }
    if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
      return new ConnectionError(`cannot resolve the host of ${origin} (${code}).`, "HostNotFound");
    }
    if (code === "ETIMEDOUT") {
      return new ConnectionError(`${origin} did not answer: ${describe(err)}`, "Timeout");
    }
    return new ConnectionError(`request to ${origin} failed: ${describe(err)}`, "ConnectionFailed");
  }
}

export function parseJson(res: HttpResponse): unknown {
  if (res.body.length === 0) return undefined;
  const text = res.body.toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(
      res.status,
      "InvalidResponse",
      `the server answered ${res.status} with a body that is not JSON: ${snippet(text)}`,
    );
  }
}

function toApiError(res: HttpResponse): ApiError {
  const text = res.body.toString("utf8");
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const e = parsed.error;
    if (e && typeof e.code === "string") {
      return new ApiError(res.status, e.code, typeof e.message === "string" ? e.message : "");
    }
  } catch {
    // not JSON: fall through to the status line
  }
  const code = res.headers["x-ms-error-code"] ?? `HTTP ${res.status}`;
  return new ApiError(res.status, code, text.trim() ? snippet(text) : `the server answered ${res.status}.`);
}

function snippet(text: string): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length > 200 ? `${one.slice(0, 200)}…` : one;
}

function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const errors = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(errors) && errors.length > 0) e = errors[0];
    else e = (e as { cause?: unknown }).cause;
  }
  return (err as { code?: string }).code;
}

function describe(err: unknown): string {
  const code = errorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

function ms(started: number): string {
  return `${Math.round(performance.now() - started)} ms`;
}
