// A SandboxDriver without an engine, for fast tests of the session machinery (reconciler, claims, adoption):
// sandboxes are bookkeeping, a code interpreter's agent is a small fake that attaches to the server's socket
// and answers hello and exec, a custom container's port is whatever the test serves on 127.0.0.1. Creations can
// be held (a lagging engine) or made to fail; the engine can stop answering (`down`), and sandboxes can vanish
// unheard or hear an OOM kill.
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { RuntimeUnavailableError } from "../../src/runtime/errors.ts";
import type {
  ImageInfo,
  SandboxDriver,
  SandboxEvent,
  SandboxInfo,
  SandboxSpec,
  SandboxUsage,
} from "../../src/runtime/sandbox-driver.ts";

interface FakeSandbox {
  info: SandboxInfo;
  agent: FakeAgent | undefined;
}

/** Speaks the agent side of docs/agent-protocol.md: attach (keeping the key it is given), hello, exec "1+1". */
class FakeAgent {
  #key: string | null = null;
  #socket: Socket | undefined;
  #stopped = false;
  readonly #path: string;

  readonly behaviour: { refuseEnvironment: boolean };

  constructor(socketDir: string, behaviour: { refuseEnvironment: boolean } = { refuseEnvironment: false }) {
    this.behaviour = behaviour;
    this.#path = join(socketDir, "agent.sock");
    this.#attach();
  }

  stop(): void {
    this.#stopped = true;
    this.#socket?.destroy();
  }

  #attach(): void {
    if (this.#stopped) return;
    const socket = connect(this.#path);
    this.#socket = socket;
    let buffered = Buffer.alloc(0);
    let attached = false;
    socket.on("connect", () =>
      socket.write(frame({ op: "attach", version: "2", kernel: "python", key: this.#key })),
    );
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 8) {
        const total = 8 + buffered.readUInt32BE(0) + buffered.readUInt32BE(4);
        if (buffered.length < total) return;
        const header = JSON.parse(buffered.subarray(8, 8 + buffered.readUInt32BE(0)).toString()) as Record<
          string,
          unknown
        >;
        buffered = buffered.subarray(total);
        if (!attached) {
          attached = true;
          this.#key = header.key as string;
          continue;
        }
        socket.write(frame(answer(header, this.behaviour)));
      }
    });
    socket.on("error", () => {});
    // Like the real agent: when the connection ends (a restarted server), attach again.
    socket.on("close", () => {
      if (!this.#stopped) setTimeout(() => this.#attach(), 20).unref();
    });
  }
}

/** What the fake driver and its agents report as a session's usage. */
export const FAKE_USAGE = { cpuSeconds: 1.5, memoryBytes: 32 << 20, diskBytes: 4096 } as const;

function answer(
  request: Record<string, unknown>,
  behaviour: { refuseEnvironment: boolean },
): Record<string, unknown> {
  const id = request.id;
  if (request.op === "env.set" && !behaviour.refuseEnvironment) return { id, ok: true };
  if (request.op === "usage") return { id, ok: true, dataDirUsedBytes: FAKE_USAGE.diskBytes };
  if (request.op === "hello") return { id, ok: true, agent: "python", version: "1", pid: 1 };
  if (request.op === "exec") {
    return {
      id,
      ok: true,
      status: "Succeeded",
      stdout: "",
      stderr: "",
      stdoutTruncated: false,
      stderrTruncated: false,
      result: 2,
      images: [],
      error: null,
      timedOut: false,
      restarted: false,
      durationMs: 0,
    };
  }
  return {
    id,
    ok: false,
    error: { code: "BadRequest", message: `the fake agent does not do ${String(request.op)}` },
  };
}

function frame(header: Record<string, unknown>): Buffer {
  const body = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(body.length, 0);
  return Buffer.concat([prefix, body]);
}

export class FakeSandboxDriver implements SandboxDriver {
  readonly name = "fake";
  readonly sandboxes = new Map<string, FakeSandbox>();
  /** Every create call, in order (including held and failed ones). */
  readonly creates: SandboxSpec[] = [];
  /** While true, creations wait in `held` until released (a lagging engine). */
  hold = false;
  readonly held: (() => void)[] = [];
  /** Agents refuse env.set (as one whose sandbox goes away under it would fail it). */
  refuseEnvironment = false;
  /** Creations to fail from now on, with this message. */
  failCreates = 0;
  failMessage = "the fake engine refused to create the sandbox";
  /**
   * While set, the engine does not answer: ping and every engine call reject with RuntimeUnavailableError and this
   * reason, as the Docker driver does when its socket refuses. Sandboxes (and their agents) live on meanwhile.
   */
  down: string | undefined;
  #n = 0;
  #watchers = new Set<(e: SandboxEvent) => void>();

  get live(): SandboxInfo[] {
    return [...this.sandboxes.values()].map((s) => s.info);
  }

  async ping(): Promise<void> {
    this.#answering();
  }
  async runtimes() {
    this.#answering();
    return [{ name: "runc", args: [] }];
  }
  async getImage(ref: string): Promise<ImageInfo> {
    this.#answering();
    return { id: "sha256:fake", ref, labels: {} };
  }
  async pullImage(ref: string): Promise<ImageInfo> {
    return this.getImage(ref);
  }
  async create(spec: SandboxSpec): Promise<SandboxInfo> {
    this.creates.push(spec);
    this.#answering();
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    if (this.failCreates > 0) {
      this.failCreates--;
      throw new Error(this.failMessage);
    }
    return this.add(spec.labels, spec.image, spec.agentSocketDir);
  }
  /** A sandbox as if created earlier (e.g. by a server that has since stopped). */
  add(labels: Record<string, string>, image = "fake", agentSocketDir?: string): SandboxInfo {
    const info: SandboxInfo = {
      id: `fake${this.#n++}`,
      labels,
      state: "running",
      address: "127.0.0.1",
      image,
    };
    this.sandboxes.set(info.id, {
      info,
      agent: agentSocketDir === undefined ? undefined : new FakeAgent(agentSocketDir, this),
    });
    return info;
  }
  async inspect(id: string): Promise<SandboxInfo | undefined> {
    this.#answering();
    return this.sandboxes.get(id)?.info;
  }
  async list(labels: Record<string, string>): Promise<SandboxInfo[]> {
    this.#answering();
    return this.live.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
  async remove(id: string): Promise<void> {
    this.#answering();
    const sandbox = this.sandboxes.get(id);
    sandbox?.agent?.stop();
    this.sandboxes.delete(id);
  }
  /** The sandbox dies from outside (an OOM kill, a `docker rm -f`): watchers hear "die". */
  kill(id: string): void {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) return;
    sandbox.agent?.stop();
    sandbox.info.state = "exited";
    for (const w of this.#watchers) w({ id, labels: sandbox.info.labels, type: "die", exitCode: 137 });
  }
  /** The sandbox is gone and nobody heard (it went while the engine was away): no event, only a re-list tells. */
  vanish(id: string): void {
    this.sandboxes.get(id)?.agent?.stop();
    this.sandboxes.delete(id);
  }
  /** A process inside the sandbox was OOM-killed: watchers hear "oom"; the sandbox itself runs on. */
  oom(id: string): void {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) return;
    for (const w of this.#watchers) w({ id, labels: sandbox.info.labels, type: "oom" });
  }
  #answering(): void {
    if (this.down !== undefined)
      throw new RuntimeUnavailableError(`the fake engine does not answer: ${this.down}`);
  }
  async memoryUsageBytes(): Promise<number | undefined> {
    return undefined;
  }
  /** Fixed numbers: fast tests check the shape, the real engine's numbers are checked in integration tests. */
  async usage(id: string): Promise<SandboxUsage | undefined> {
    this.#answering();
    return this.sandboxes.get(id)?.info.state === "running"
      ? { cpuSeconds: FAKE_USAGE.cpuSeconds, memoryBytes: FAKE_USAGE.memoryBytes }
      : undefined;
  }
  watch(_labels: Record<string, string>, onEvent: (event: SandboxEvent) => void): () => void {
    this.#watchers.add(onEvent);
    return () => this.#watchers.delete(onEvent);
  }
  /** The server lets go of the engine; its sandboxes live on (a restarted server adopts them). */
  async close(): Promise<void> {}

  /** The end of a test: every fake agent stops. */
  dispose(): void {
    for (const s of this.sandboxes.values()) s.agent?.stop();
  }
}
