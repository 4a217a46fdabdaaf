// The server's end of one sandbox's agent channel: a Unix socket the server listens on, in a directory the sandbox
// sees read-only, to which the agent inside connects and attaches (docs/agent-protocol.md, "Attaching").
import { createHmac, timingSafeEqual } from "node:crypto";
import { chmod, chown, unlink } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { AgentClient, type HelloResponse } from "./agent-client.ts";
import { AgentTimeoutError, AgentUnavailableError } from "./errors.ts";

export interface AgentEndpointOptions {
  /** What the agent must present to attach again after its first attach (see agentKey). */
  key: string;
  /**
   * Accept the first attach without a key: true only for a sandbox the server has just created, where nothing but
   * the agent runs before the first attach (the session's code runs only once the server sends it). An adopted
   * sandbox's agent must present its key.
   */
  trustFirstAttach: boolean;
  /** Who may connect (the sandbox's user): the socket is made theirs, mode 0600. */
  owner?: { uid: number; gid: number };
  /** Told about refused attaches (never the key). */
  onRefused?: (reason: string, refusals: number) => void;
}

export interface WaitForAgentOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/** The one frame an agent sends before it is attached: small, header only. */
const MAX_ATTACH_HEADER_BYTES = 4096;
const ATTACH_TIMEOUT_MS = 5_000;
/** Connections that have not attached yet: code in the sandbox may connect too, and may not make us hold more. */
const MAX_UNATTACHED = 4;
const FRAME_PREFIX_BYTES = 8;

/**
 * The key an agent attaches with: derived from the server's agent secret and the session's id, so a restarted
 * server knows it without storing it, and one sandbox's key says nothing of another's.
 */
export function agentKey(secret: string, sessionId: string): string {
  return createHmac("sha256", secret).update(`sessionpool agent\0${sessionId}`).digest("base64url");
}

function frame(header: Record<string, unknown>): Buffer {
  const body = Buffer.from(JSON.stringify(header));
  const out = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + body.length);
  out.writeUInt32BE(body.length, 0);
  out.writeUInt32BE(0, 4);
  body.copy(out, FRAME_PREFIX_BYTES);
  return out;
}

function sameKey(given: unknown, key: string): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

export class AgentEndpoint {
  readonly socketPath: string;
  readonly #key: string;
  #trustFirst: boolean;
  readonly #onRefused: AgentEndpointOptions["onRefused"];
  readonly #server: Server;
  #client: AgentClient | undefined;
  #unattached = 0;
  #refusals = 0;
  #waiters = new Set<() => void>();
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(socketPath: string, server: Server, options: AgentEndpointOptions) {
    this.socketPath = socketPath;
    this.#server = server;
    this.#key = options.key;
    this.#trustFirst = options.trustFirstAttach;
    this.#onRefused = options.onRefused;
    server.on("connection", (socket) => this.#onConnection(socket));
    // A listener error after listen (none are expected on a Unix socket) must not crash the process.
    server.on("error", () => {});
  }

  /** Listens at `socketPath`, replacing a stale socket file left by an earlier server. */
  static async listen(socketPath: string, options: AgentEndpointOptions): Promise<AgentEndpoint> {
    await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    const server = createServer({ pauseOnConnect: false });
    const endpoint = new AgentEndpoint(socketPath, server, options);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.removeListener("error", reject);
        resolve();
      });
    });
    try {
      await chmod(socketPath, 0o600);
      if (options.owner) await chown(socketPath, options.owner.uid, options.owner.gid);
    } catch (err) {
      await endpoint.close();
      throw err;
    }
    return endpoint;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The attached agent's connection, when one is attached and open. */
  get client(): AgentClient | undefined {
    return this.#client !== undefined && !this.#client.closed ? this.#client : undefined;
  }

  /** The attached agent's connection; AgentUnavailableError when none is (the agent is re-attaching). */
  current(): AgentClient {
    const client = this.client;
    if (client === undefined) {
      throw new AgentUnavailableError(
        this.#closed ? "the session's agent channel is closed" : "the session's agent is not attached",
      );
    }
    return client;
  }

  /** Resolves with the attached connection, waiting up to `timeoutMs` for the agent to attach. */
  attached(options: WaitForAgentOptions): Promise<AgentClient> {
    const { timeoutMs, signal } = options;
    const ready = this.client;
    if (ready !== undefined) return Promise.resolve(ready);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed)
      return Promise.reject(new AgentUnavailableError("the session's agent channel is closed"));
    return new Promise<AgentClient>((resolve, reject) => {
      const settle = (err: unknown, client?: AgentClient): void => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        signal?.removeEventListener("abort", onAbort);
        if (client !== undefined) resolve(client);
        else reject(err);
      };
      const wake = (): void => {
        const client = this.client;
        if (client !== undefined) settle(undefined, client);
        else if (this.#closed) settle(new AgentUnavailableError("the session's agent channel is closed"));
      };
      const onAbort = (): void => settle(signal?.reason);
      const timer = setTimeout(
        () =>
          settle(
            new AgentTimeoutError(`the session's agent did not attach within ${timeoutMs} ms`, timeoutMs),
          ),
        timeoutMs,
      );
      this.#waiters.add(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Stops listening and closes the agent's connection; resolves once the socket file is gone. Safe to call twice
   * (both calls resolve together).
   */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#closing = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      this.#client?.close();
      for (const wake of [...this.#waiters]) wake();
    }
    return this.#closing;
  }

  #onConnection(socket: Socket): void {
    if (this.#closed || this.#unattached >= MAX_UNATTACHED) {
      socket.destroy();
      return;
    }
    this.#unattached++;
    let chunks: Buffer[] = [];
    let buffered = 0;
    let done = false;
    const finish = (): void => {
      done = true;
      this.#unattached--;
      clearTimeout(timer);
      socket.removeListener("data", onData);
    };
    const refuse = (reason: string): void => {
      finish();
      socket.destroy();
      this.#refusals++;
      this.#onRefused?.(reason, this.#refusals);
    };
    const onData = (chunk: Buffer): void => {
      if (done) return;
      chunks.push(chunk);
      buffered += chunk.length;
      if (buffered < FRAME_PREFIX_BYTES) return;
      const buf = chunks.length === 1 ? chunk : Buffer.concat(chunks, buffered);
      chunks = [buf];
      const headerBytes = buf.readUInt32BE(0);
      if (headerBytes > MAX_ATTACH_HEADER_BYTES || buf.readUInt32BE(4) !== 0) {
        refuse("an oversized or malformed attach frame");
        return;
      }
      if (buffered < FRAME_PREFIX_BYTES + headerBytes) return;
      let attach: Record<string, unknown>;
      try {
        attach = JSON.parse(buf.toString("utf8", FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + headerBytes));
      } catch {
        refuse("an attach frame that is not JSON");
        return;
      }
      if (attach === null || typeof attach !== "object" || attach.op !== "attach") {
        refuse("a first frame that is not an attach");
        return;
      }
      const trusted = sameKey(attach.key, this.#key) || (attach.key === null && this.#trustFirst);
      if (!trusted) {
        refuse(attach.key === null ? "an attach without the key" : "an attach with a wrong key");
        return;
      }
      finish();
      this.#trustFirst = false;
      const rest = buf.subarray(FRAME_PREFIX_BYTES + headerBytes);
      if (rest.length > 0) socket.unshift(rest);
      socket.write(frame({ ok: true, key: this.#key }));
      const previous = this.#client;
      this.#client = new AgentClient(socket);
      previous?.close(); // one agent connection at a time: the newest attach wins
      for (const wake of [...this.#waiters]) wake();
    };
    const timer = setTimeout(() => refuse("no attach within the deadline"), ATTACH_TIMEOUT_MS);
    socket.on("data", onData);
    socket.on("error", () => {});
    socket.once("close", () => {
      if (!done) finish();
    });
  }
}

/**
 * Waits for the agent to attach, then for `hello`, i.e. until the interpreter is warm. A connection that drops in
 * between (the agent restarted its attach) is waited for again, within the same deadline.
 */
export async function waitForAgent(
  endpoint: AgentEndpoint,
  options: WaitForAgentOptions,
): Promise<{ client: AgentClient; hello: HelloResponse }> {
  const { timeoutMs, signal } = options;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    signal?.throwIfAborted();
    const remainingMs = Math.ceil(deadline - performance.now());
    if (remainingMs <= 0) {
      throw new AgentUnavailableError(`the session's agent was not ready within ${timeoutMs} ms`, lastError);
    }
    try {
      const client = await endpoint.attached({ timeoutMs: remainingMs, ...(signal ? { signal } : {}) });
      const hello = await client.hello({ timeoutMs: remainingMs, ...(signal ? { signal } : {}) });
      return { client, hello };
    } catch (err) {
      signal?.throwIfAborted();
      if (err instanceof AgentTimeoutError) {
        throw new AgentUnavailableError(`the session's agent was not ready within ${timeoutMs} ms`, err);
      }
      if (!(err instanceof AgentUnavailableError)) throw err;
      if (endpoint.closed) throw err;
      lastError = err;
    }
  }
}
