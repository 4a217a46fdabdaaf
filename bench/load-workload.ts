// The load test's clients: concurrent loops over several pools, each a mix of first use of an identifier (a claim),
// executions, uploads, downloads, file lists, deletes, session lists and session ends. Every request has a
// deadline, and every answer is checked against what the clients know the session holds (a token set at creation,
// the files they uploaded), so a mixed-up, lost or half-deleted session shows as a failure, not just a slow reply.
import { randomBytes, randomInt } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { FormData } from "undici";
import type { BenchClient, TimedReply } from "./bench-client.ts";
import type { BenchPool } from "./bench-server.ts";
import type { LoadRecorder, OpKind, Outcome } from "./load-recorder.ts";

export const DATA_API = "2025-10-02-preview";
export type LoadContainerType = "PythonLTS" | "NodeLTS" | "Shell";

/** One pool under load: its endpoint, a client holding the pool's own data-plane token, its identifiers. */
export interface LoadPool {
  pool: BenchPool;
  type: LoadContainerType;
  client: BenchClient;
  maxSessions: number;
  identifiers: Ident[];
}

/**
 * What the clients know of one identifier. `creating` and `draining` are exclusive (one client owns the
 * identifier); `live` is shared by leases; `retired` after an answer that leaves the server's state unknown.
 */
export interface Ident {
  name: string;
  state: "absent" | "creating" | "live" | "draining" | "retired";
  /** Bumped by each successful first use: files and the token belong to one generation of the session. */
  generation: number;
  token: string;
  leases: number;
  /** After a 429, the identifier waits for the server's Retry-After before it is tried again. */
  coolUntilMs: number;
  drained: (() => void) | undefined;
}

interface FileRecord {
  ident: Ident;
  generation: number;
  name: string;
  content: string;
}

export interface WorkloadOptions {
  clients: number;
  durationMs: number;
  requestTimeoutMs: number;
  /** Sessions ended per second across all pools (each costs a sandbox start to replace). */
  churnPerS: number;
  /** Upper bound of a random pause between one client's requests (0: back to back). */
  thinkMs: number;
}

/** A client's uploads kept per session at most; one more and the oldest is deleted instead. */
const FILES_PER_CLIENT = 4;
const MIN_FILE_BYTES = 256;
const MAX_FILE_BYTES = 32 * 1024;
/** When a pool has no live session yet (the first seconds), a client looks again after this long. */
const IDLE_WAIT_MS = 50;

export function identifiersFor(poolIndex: number, count: number): Ident[] {
  // Some carry characters that must be percent-encoded in the query string, as real identifiers do.
  return Array.from({ length: count }, (_, i) => ({
    name: i % 3 === 2 ? `user:${poolIndex}/${i}@load#x` : `load-${poolIndex}-${i}`,
    state: "absent" as const,
    generation: 0,
    token: "",
    leases: 0,
    coolUntilMs: 0,
    drained: undefined,
  }));
}

/** Runs the clients until the duration has passed and every request in flight has ended. */
export async function runWorkload(
  pools: LoadPool[],
  options: WorkloadOptions,
  recorder: LoadRecorder,
): Promise<void> {
  const endAt = performance.now() + options.durationMs;
  let nextEndAt = performance.now() + 1000 / Math.max(options.churnPerS, 1e-9);
  const churnDue = () => options.churnPerS > 0 && performance.now() >= nextEndAt;
  const churnTaken = () => {
    nextEndAt = performance.now() + 1000 / options.churnPerS;
  };
  await Promise.all(
    Array.from({ length: options.clients }, async (_, c) => {
      const lp = pools[c % pools.length]!;
      const client = new LoadClient(c, lp, options, recorder);
      // Spread the start over the first second so 200 clients do not open 200 connections in one tick.
      await sleep(randomInt(1000));
      while (performance.now() < endAt) {
        if (churnDue()) {
          const victim = pick(lp.identifiers, (i) => i.state === "live");
          if (victim) {
            churnTaken();
            await client.endSession(victim);
            continue;
          }
        }
        const now = performance.now();
        const fresh = pick(lp.identifiers, (i) => i.state === "absent" && i.coolUntilMs <= now);
        if (fresh) await client.create(fresh);
        else if (!(await client.mixed())) await sleep(IDLE_WAIT_MS);
        if (options.thinkMs > 0) await sleep(randomInt(options.thinkMs + 1));
      }
    }),
  );
}

function pick<T>(items: T[], ok: (item: T) => boolean): T | undefined {
  const candidates = items.filter(ok);
  return candidates.length === 0 ? undefined : candidates[randomInt(candidates.length)];
}

type Check = (r: TimedReply) => string | undefined;

class LoadClient {
  readonly #id: number;
  readonly #lp: LoadPool;
  readonly #o: WorkloadOptions;
  readonly #rec: LoadRecorder;
  readonly #files: FileRecord[] = [];
  #seq = 0;
  #ends = 0;

  constructor(id: number, lp: LoadPool, o: WorkloadOptions, rec: LoadRecorder) {
    this.#id = id;
    this.#lp = lp;
    this.#o = o;
    this.#rec = rec;
  }

  /** First use of an identifier: the execution that claims its session also sets the token later ones read. */
  async create(ident: Ident): Promise<void> {
    ident.state = "creating";
    const token = `t${randomBytes(6).toString("hex")}`;
    const r = await this.#send("create", "POST", "/executions", ident, this.#setTokenBody(token), (reply) => {
      if (reply.status !== 200)
        return `answered ${reply.status} ${reply.headers["x-ms-error-code"] ?? ""}`.trim();
      if (reply.headers["x-ms-allocation-time"] === undefined)
        return "the first use of an identifier did not allocate a session";
      return this.#checkOutput(reply, token);
    });
    if (r.outcome === "ok") {
      ident.generation++;
      ident.token = token;
      ident.state = "live";
    } else if (r.outcome === "limited") {
      const retryAfterS = Number(r.reply?.headers["retry-after"] ?? 1);
      ident.coolUntilMs = performance.now() + Math.min(Math.max(retryAfterS, 0.1), 10) * 1000;
      ident.state = "absent";
    } else {
      ident.state = "retired";
    }
  }

  /** One request of the everyday mix on a live session; false when the pool has none yet. */
  async mixed(): Promise<boolean> {
    const roll = Math.random();
    if (roll < 0.45) return this.#withLease(undefined, (ident) => this.#execute(ident));
    if (roll < 0.6) return this.#uploadOrPrune();
    if (roll < 0.75) return this.#download();
    if (roll < 0.9) return this.#withLease(undefined, (ident) => this.#listFiles(ident));
    await this.#listSessions();
    return true;
  }

  /** Ends a live session once no request of this run uses it (DELETE /session or stopSession, alternately). */
  async endSession(ident: Ident): Promise<void> {
    ident.state = "draining";
    if (ident.leases > 0) await new Promise<void>((resolve) => (ident.drained = resolve));
    ident.drained = undefined;
    const stop = this.#ends++ % 2 === 1;
    const r = stop
      ? await this.#send("endSession", "POST", "/.management/stopSession", ident, undefined, (reply) =>
          reply.status === 200 ? undefined : `stopSession answered ${reply.status}`,
        )
      : await this.#send("endSession", "DELETE", "/session", ident, undefined, (reply) =>
          reply.status === 204 ? undefined : `DELETE /session answered ${reply.status}`,
        );
    ident.state = r.outcome === "ok" ? "absent" : "retired";
  }

  async #withLease(ident: Ident | undefined, fn: (ident: Ident) => Promise<void>): Promise<boolean> {
    const target = ident ?? pick(this.#lp.identifiers, (i) => i.state === "live");
    if (target?.state !== "live") return false;
    target.leases++;
    try {
      await fn(target);
    } finally {
      target.leases--;
      if (target.leases === 0) target.drained?.();
    }
    return true;
  }

  async #execute(ident: Ident): Promise<void> {
    await this.#send("execute", "POST", "/executions", ident, this.#readTokenBody(), (reply) => {
      if (reply.status !== 200)
        return `answered ${reply.status} ${reply.headers["x-ms-error-code"] ?? ""}`.trim();
      if (reply.headers["x-ms-allocation-time"] !== undefined)
        return "an execution in a live session allocated a new one (the session was lost)";
      return this.#checkOutput(reply, ident.token);
    });
  }

  #liveFiles(): FileRecord[] {
    // Files of sessions that ended are gone with them.
    for (let i = this.#files.length - 1; i >= 0; i--) {
      const f = this.#files[i]!;
      if (f.ident.state !== "live" && f.ident.state !== "draining") this.#files.splice(i, 1);
      else if (f.ident.generation !== f.generation) this.#files.splice(i, 1);
    }
    return this.#files.filter((f) => f.ident.state === "live");
  }

  async #uploadOrPrune(): Promise<boolean> {
    const mine = this.#liveFiles();
    if (mine.length >= FILES_PER_CLIENT) {
      const oldest = mine[0]!;
      return this.#withLease(oldest.ident, async (ident) => {
        await this.#send(
          "deleteFile",
          "DELETE",
          `/files/${encodeURIComponent(oldest.name)}`,
          ident,
          undefined,
          (reply) => (reply.status === 204 ? undefined : `answered ${reply.status}`),
        );
        const at = this.#files.indexOf(oldest);
        if (at >= 0) this.#files.splice(at, 1);
      });
    }
    return this.#withLease(undefined, async (ident) => {
      const name = `c${this.#id}-${this.#seq++}.txt`;
      const size = randomInt(MIN_FILE_BYTES, MAX_FILE_BYTES + 1);
      const content = randomBytes(size).toString("base64url").slice(0, size);
      const form = new FormData();
      form.append("file", new Blob([content], { type: "text/plain" }), name);
      const generation = ident.generation;
      const r = await this.#send("upload", "POST", "/files", ident, form, (reply) => {
        if (reply.status !== 200)
          return `answered ${reply.status} ${reply.headers["x-ms-error-code"] ?? ""}`.trim();
        const body = reply.body as { name?: unknown; sizeInBytes?: unknown } | undefined;
        return body?.name === name && body.sizeInBytes === size
          ? undefined
          : `the upload answered ${reply.text.slice(0, 200)} for ${name} (${size} bytes)`;
      });
      if (r.outcome === "ok") this.#files.push({ ident, generation, name, content });
    });
  }

  async #download(): Promise<boolean> {
    const mine = this.#liveFiles();
    const file = mine[randomInt(Math.max(mine.length, 1))];
    if (!file) return this.#uploadOrPrune();
    return this.#withLease(file.ident, async (ident) => {
      await this.#send(
        "download",
        "GET",
        `/files/${encodeURIComponent(file.name)}/content`,
        ident,
        undefined,
        (reply) => {
          if (reply.status !== 200)
            return `answered ${reply.status} ${reply.headers["x-ms-error-code"] ?? ""}`.trim();
          return reply.text === file.content
            ? undefined
            : `${file.name}: read ${reply.text.length} bytes that differ from the ${file.content.length} uploaded`;
        },
      );
    });
  }

  async #listFiles(ident: Ident): Promise<void> {
    const expected = this.#liveFiles()
      .filter((f) => f.ident === ident)
      .map((f) => f.name);
    await this.#send("listFiles", "GET", "/files", ident, undefined, (reply) => {
      if (reply.status !== 200)
        return `answered ${reply.status} ${reply.headers["x-ms-error-code"] ?? ""}`.trim();
      const value = (reply.body as { value?: { name?: unknown }[] } | undefined)?.value;
      if (!Array.isArray(value)) return `no 'value' array: ${reply.text.slice(0, 200)}`;
      const names = new Set(value.map((f) => f.name));
      const missing = expected.filter((n) => !names.has(n));
      return missing.length === 0 ? undefined : `uploaded files missing from the list: ${missing.join(", ")}`;
    });
  }

  async #listSessions(): Promise<void> {
    const known = new Set(this.#lp.identifiers.map((i) => i.name));
    await this.#send("listSessions", "GET", "/listSessions", undefined, undefined, (reply) => {
      if (reply.status !== 200)
        return `answered ${reply.status} ${reply.headers["x-ms-error-code"] ?? ""}`.trim();
      const sessions = (reply.body as { sessions?: { identifier?: unknown }[] } | undefined)?.sessions;
      if (!Array.isArray(sessions)) return `no 'sessions' array: ${reply.text.slice(0, 200)}`;
      if (sessions.length > this.#lp.maxSessions)
        return `${sessions.length} sessions listed, above maxConcurrentSessions ${this.#lp.maxSessions}`;
      const strangers = sessions.filter((s) => !known.has(s.identifier as string));
      return strangers.length === 0
        ? undefined
        : `sessions of unknown identifiers listed: ${JSON.stringify(strangers).slice(0, 200)}`;
    });
  }

  #setTokenBody(token: string): Record<string, unknown> {
    const common = { timeoutInSeconds: 60 };
    switch (this.#lp.type) {
      case "Shell":
        return { ...common, shellCommand: `printf %s ${token} > /tmp/tok && cat /tmp/tok` };
      case "NodeLTS":
        return { ...common, code: `globalThis.tok = "${token}"; console.log(tok)` };
      default:
        return { ...common, code: `tok = "${token}"\nprint(tok)` };
    }
  }

  #readTokenBody(): Record<string, unknown> {
    const common = { timeoutInSeconds: 60 };
    switch (this.#lp.type) {
      case "Shell":
        return { ...common, shellCommand: "cat /tmp/tok" };
      case "NodeLTS":
        return { ...common, code: "console.log(tok)" };
      default:
        return { ...common, code: "print(tok)" };
    }
  }

  /** A succeeded execution (Shell: exit code 0) whose stdout is the session's token. */
  #checkOutput(reply: TimedReply, token: string): string | undefined {
    const body = reply.body as { status?: unknown; result?: { stdout?: unknown } } | undefined;
    const succeeded = this.#lp.type === "Shell" ? body?.status === "0" : body?.status === "Succeeded";
    const stdout = typeof body?.result?.stdout === "string" ? body.result.stdout.trim() : undefined;
    if (succeeded && stdout === token) return undefined;
    return `expected a succeeded execution printing ${token}, got ${reply.text.slice(0, 300)}`;
  }

  /** Sends one data-plane request with the run's deadline and records how it went. */
  async #send(
    kind: OpKind,
    method: "GET" | "POST" | "DELETE",
    path: string,
    ident: Ident | undefined,
    body: unknown,
    check: Check,
  ): Promise<{ outcome: Outcome; reply: TimedReply | undefined }> {
    const query = `api-version=${DATA_API}${ident ? `&identifier=${encodeURIComponent(ident.name)}` : ""}`;
    const url = `${this.#lp.pool.endpoint}${path}?${query}`;
    const started = performance.now();
    const done = this.#rec.begin();
    let reply: TimedReply;
    try {
      reply = await this.#lp.client.send(method, url, body, this.#o.requestTimeoutMs);
    } catch (err) {
      const outcome = isDeadline(err) ? ("hung" as const) : ("transport" as const);
      done();
      this.#rec.failed(kind, outcome, performance.now() - started, `${method} ${path}: ${describe(err)}`);
      return { outcome, reply: undefined };
    }
    done();
    if (reply.status >= 500) {
      this.#rec.answered(kind, reply, "server-error", `${method} ${path}: ${reply.text.slice(0, 300)}`);
      return { outcome: "server-error", reply };
    }
    // Documented back-pressure: a pool at maxConcurrentSessions (first use), or a session whose queue of waiting
    // executions is full (16 by default: 200 clients pile onto the few sessions that are live early on).
    const backPressure =
      reply.status === 429 &&
      (kind === "create" || reply.headers["x-ms-error-code"] === "ExecutionQueueFull");
    if (backPressure) {
      this.#rec.answered(kind, reply, "limited");
      return { outcome: "limited", reply };
    }
    const problem = check(reply);
    this.#rec.answered(
      kind,
      reply,
      problem === undefined ? "ok" : "unexpected",
      problem && `${method} ${path} (${ident?.name ?? this.#lp.pool.name}): ${problem}`,
    );
    return { outcome: problem === undefined ? "ok" : "unexpected", reply };
  }
}

/** The request's own deadline passed (AbortSignal.timeout, or undici's header/body timeouts). */
function isDeadline(err: unknown): boolean {
  const e = err as { name?: string; code?: string; cause?: { name?: string } };
  return (
    e?.name === "TimeoutError" ||
    e?.cause?.name === "TimeoutError" ||
    e?.code === "UND_ERR_HEADERS_TIMEOUT" ||
    e?.code === "UND_ERR_BODY_TIMEOUT"
  );
}

function describe(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  return `${e?.name ?? "Error"}${e?.code ? ` ${e.code}` : ""}: ${e?.message ?? String(err)}`;
}
