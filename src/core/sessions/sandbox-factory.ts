// Makes and unmakes sandboxes: resolves a pool's template (image, runtime), creates a live sandbox within the server's
// capacity and a bounded number of concurrent creates, waits until it serves, and removes it with everything it
// held (the agent's socket, its record, its share of the capacity).
import { chown, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { AgentEndpoint, agentKey, waitForAgent } from "../../agent-channel/agent-endpoint.ts";
import { ImageNotFoundError } from "../../runtime/errors.ts";
import { buildLabels } from "../../runtime/labels.ts";
import type { RegistryAuth } from "../../runtime/sandbox-driver.ts";
import { chooseSandboxRuntimes, GVISOR, type SandboxRuntimes } from "../../runtime/sandbox-runtime.ts";
import type { StoredPool, StoredSession } from "../../store/store.ts";
import { PoolNotReadyError, SandboxImageMissingError, SessionStartError } from "../errors.ts";
import type { PoolDoc } from "../pools/pool-doc.ts";
import { startupPasses, waitForPort } from "./probes.ts";
import {
  imageRefFor,
  type SandboxTemplate,
  templateFor,
  UnsupportedContainerTypeError,
} from "./sandbox-template.ts";
import type { LiveSandbox, SessionContext } from "./session-context.ts";

export class SandboxFactory {
  readonly #ctx: SessionContext;
  #createSlots: number;
  readonly #slotWaiters: (() => void)[] = [];
  #runtimes: SandboxRuntimes | undefined;

  /** The runtimes settled against the engine, once it has answered. */
  get settledRuntimes(): SandboxRuntimes | undefined {
    return this.#runtimes;
  }

  constructor(ctx: SessionContext) {
    this.#ctx = ctx;
    this.#createSlots = ctx.d.createConcurrency;
  }

  /**
   * The runtimes sandboxes run under, settled against the engine the first time it answers (`--sandbox-runtime
   * auto` means gVisor when the engine has it). RuntimeConfigError when the choice cannot be met.
   */
  async runtimes(options: { signal?: AbortSignal } = {}): Promise<SandboxRuntimes> {
    if (this.#runtimes !== undefined) return this.#runtimes;
    const runtimes = chooseSandboxRuntimes(
      this.#ctx.d.defaults.runtime,
      await this.#ctx.d.driver.runtimes(options),
    );
    if (this.#runtimes === undefined) {
      this.#runtimes = runtimes;
      this.#ctx.d.metrics.sandboxRuntime.set({ runtime: runtimes.name }, 1);
      if (runtimes.warning !== undefined) this.#ctx.d.logger.warn(runtimes.warning);
      else
        this.#ctx.d.logger.info(
          { runtime: runtimes.name, networked: runtimes.networked ?? runtimes.networkedUnavailable },
          runtimes.name === GVISOR
            ? "sandboxes run under gVisor (runsc)"
            : `sandboxes run under ${runtimes.name}`,
        );
    }
    return this.#runtimes;
  }

  /** The runtime sandboxes run under ("runsc" is gVisor), once the engine has answered. */
  get sandboxRuntime(): string | undefined {
    return this.#runtimes?.name;
  }

  async resolveTemplate(
    doc: PoolDoc,
    pool: StoredPool,
    signal?: AbortSignal,
    options: { pull?: boolean } = {},
  ): Promise<SandboxTemplate> {
    let ref: string;
    try {
      ref = imageRefFor(doc, this.#ctx.d.defaults);
    } catch (err) {
      if (err instanceof UnsupportedContainerTypeError) throw new PoolNotReadyError(pool.name, err.message);
      throw err;
    }
    const call = signal ? { signal } : {};
    const custom = doc.properties.containerType === "CustomContainer";
    const secrets = custom ? await this.#ctx.d.secrets(pool.key) : new Map<string, string>();
    let image = options.pull ? undefined : await this.#ctx.d.driver.getImage(ref, call);
    if (!image && custom) {
      try {
        image = await this.#ctx.d.driver.pullImage(ref, registryAuth(doc, secrets), call);
      } catch (err) {
        // Air-gapped or locally built: an image the engine already has serves when no registry has it.
        // A refused credential is never papered over.
        if (!(err instanceof ImageNotFoundError)) throw err;
        image = await this.#ctx.d.driver.getImage(ref, call);
        if (!image) throw err;
        this.#ctx.d.logger.warn(
          { pool: pool.key, image: ref },
          "image not pullable; using the engine's local copy",
        );
      }
    }
    if (!image) {
      throw new SandboxImageMissingError(ref);
    }
    return templateFor(doc, this.#ctx.d.defaults, await this.runtimes(call), image.id, secrets);
  }

  async #acquireSlot(): Promise<void> {
    if (this.#createSlots > 0) {
      this.#createSlots--;
      return;
    }
    await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
  }

  #releaseSlot(): void {
    const next = this.#slotWaiters.shift();
    if (next) next();
    else this.#createSlots++;
  }

  async create(pool: StoredPool, template: SandboxTemplate, signal?: AbortSignal): Promise<LiveSandbox> {
    const memoryBytes = template.spec.memoryBytes;
    this.#ctx.d.capacity.reserve(memoryBytes); // before anything exists: a refusal leaves nothing to undo
    try {
      return await this.#createReserved(pool, template, memoryBytes, signal);
    } catch (err) {
      this.#ctx.d.capacity.release(memoryBytes);
      throw err;
    }
  }

  async #createReserved(
    pool: StoredPool,
    template: SandboxTemplate,
    memoryBytes: number,
    signal?: AbortSignal,
  ): Promise<LiveSandbox> {
    const id = crypto.randomUUID();
    const custom = template.kind === "custom";
    const socketDir = custom ? undefined : join(this.#ctx.d.socketsDir, id);
    const rec: StoredSession = {
      id,
      poolKey: pool.key,
      identifier: undefined,
      state: "pending",
      sandboxId: undefined,
      generation: pool.generation,
      createdAt: this.#ctx.d.now().toISOString(),
      allocatedAt: undefined,
      lastAccessedAt: undefined,
      expiresAt: undefined,
      owner: this.#ctx.instanceId,
    };
    // Recorded before the engine call: a crash mid-create leaves a record that adoption reconciles.
    await this.#ctx.d.store.putSession(rec);
    const call = signal ? { signal } : {};
    let sandboxId: string | undefined;
    let address: string | undefined;
    let endpoint: AgentEndpoint | undefined;
    await this.#acquireSlot();
    try {
      // Listening before the sandbox starts: its agent attaches as soon as it runs, and it alone can attach
      // without a key then (no code of the session runs before the server sends some).
      if (socketDir) endpoint = await this.openEndpoint(id, socketDir, template.spec.user, true);
      const info = await this.#ctx.d.driver.create(
        {
          ...template.spec,
          labels: buildLabels({
            pool: pool.key,
            session: id,
            instance: this.#ctx.instanceId,
            templateHash: template.hash,
            kind: template.kind,
            runtime: template.spec.runtime ?? "runc",
          }),
          ...(socketDir ? { agentSocketDir: socketDir } : {}),
        },
        call,
      );
      sandboxId = info.id;
      address = info.address;
      rec.sandboxId = sandboxId;
      await this.#ctx.d.store.putSession(rec);
    } catch (err) {
      this.#releaseSlot();
      // The store write after the create can fail (disk full): the sandbox must not outlive its record.
      if (sandboxId !== undefined) await this.removeSandbox(sandboxId);
      endpoint?.close();
      await this.deleteRecord(id);
      if (socketDir) await this.#removeSocketDir(id, socketDir);
      throw err;
    }
    this.#releaseSlot();
    const live: LiveSandbox = {
      rec,
      kind: template.kind,
      sandboxId,
      templateHash: template.hash,
      socketDir,
      agent: endpoint,
      address,
      port: template.targetPort,
      probeFailures: 0,
      // Liveness probing starts after the probe's initialDelaySeconds.
      nextProbeAt:
        performance.now() +
        (template.probes?.find((p) => p.type === "Liveness")?.initialDelaySeconds ?? 0) * 1000,
      inFlight: 0,
      persistedAccessMs: 0,
      heldMemoryBytes: 0, // held by #createLive until the sandbox is returned
      environment: undefined,
    };
    try {
      await this.#waitUntilServing(live, template, signal);
      rec.state = "ready";
      await this.#ctx.d.store.putSession(rec);
      this.#ctx.bySandbox.set(sandboxId, live);
      live.heldMemoryBytes = memoryBytes;
      return live;
    } catch (err) {
      live.agent?.close();
      await this.removeSandbox(sandboxId);
      await this.deleteRecord(id);
      if (socketDir) await this.#removeSocketDir(id, socketDir);
      throw err;
    }
  }

  /** Code interpreters: the agent answers hello. Custom containers: the port accepts connections, probes pass. */
  async #waitUntilServing(live: LiveSandbox, template: SandboxTemplate, signal?: AbortSignal): Promise<void> {
    if (live.kind === "code-interpreter") {
      await waitForAgent(live.agent!, {
        timeoutMs: this.#ctx.d.agentStartTimeoutMs,
        ...(signal ? { signal } : {}),
      });
      return;
    }
    const sandboxId = live.sandboxId;
    if (!live.address || !live.port) {
      throw new SessionStartError(
        "The custom container has no address on its network; is its network configured?",
      );
    }
    const open = await waitForPort(live.address, live.port, {
      deadlineMs: this.#ctx.d.agentStartTimeoutMs,
      ...(signal ? { signal } : {}),
      stillRunning: async () => (await this.#ctx.d.driver.inspect(sandboxId))?.state === "running",
    });
    if (!open) {
      const info = await this.#ctx.d.driver.inspect(sandboxId);
      throw new SessionStartError(
        info?.state === "running"
          ? `The container did not accept connections on its target port ${live.port} within ${this.#ctx.d.agentStartTimeoutMs / 1000} s.`
          : `The container exited (code ${info?.exitCode ?? "unknown"}) before serving on its target port ${live.port}.`,
      );
    }
    const startup = template.probes?.find((p) => p.type === "Startup");
    if (startup && !(await startupPasses(startup, live.address, signal))) {
      throw new SessionStartError("The container's Startup probe did not pass.");
    }
  }

  async remove(live: LiveSandbox): Promise<void> {
    this.#ctx.bySandbox.delete(live.sandboxId);
    if (live.heldMemoryBytes > 0) {
      this.#ctx.d.capacity.release(live.heldMemoryBytes);
      live.heldMemoryBytes = 0;
    }
    live.agent?.close();
    await this.deleteRecord(live.rec.id);
    await this.removeSandbox(live.sandboxId);
    if (live.socketDir) await this.#removeSocketDir(live.rec.id, live.socketDir);
  }

  /** Under the data dir: a read-only or failing disk must not turn an ended session into a crash. */
  async #removeSocketDir(sessionId: string, socketDir: string): Promise<void> {
    await rm(socketDir, { recursive: true, force: true }).catch((err) =>
      this.#ctx.d.logger.warn({ session: sessionId, err }, "could not remove a session's socket directory"),
    );
  }

  /** Removes a sandbox; a failure is logged, and orphan removal (by label, at start and resync) retries it. */
  async removeSandbox(sandboxId: string): Promise<void> {
    await this.#ctx.d.driver.remove(sandboxId).catch((err) => {
      this.#ctx.d.logger.warn(
        { sandbox: sandboxId, err },
        "could not remove a sandbox; orphan removal will retry",
      );
    });
  }

  /** The socket a code-interpreter sandbox's agent attaches to, in its own directory (mounted read-only). */
  async openEndpoint(
    sessionId: string,
    socketDir: string,
    user: string | undefined,
    trustFirstAttach: boolean,
  ): Promise<AgentEndpoint> {
    const [uid, gid] = user?.split(":").map(Number) ?? [];
    const owner = uid !== undefined && gid !== undefined ? { uid, gid } : undefined;
    await mkdir(socketDir, { recursive: true, mode: 0o700 });
    if (owner) await chown(socketDir, owner.uid, owner.gid);
    return AgentEndpoint.listen(join(socketDir, "agent.sock"), {
      key: agentKey(this.#ctx.d.agentSecret, sessionId),
      trustFirstAttach,
      ...(owner ? { owner } : {}),
      onRefused: (reason, refusals) => {
        // 1st, 2nd, 4th, 8th...: code in a loop cannot flood the log
        if ((refusals & (refusals - 1)) === 0)
          this.#ctx.d.logger.warn(
            { session: sessionId, reason, refusals },
            "refused an attach to a session's agent socket",
          );
      },
    });
  }

  /** Deletes a session record; a store that cannot be written (disk full) must not stop the sandbox's removal. */
  async deleteRecord(sessionId: string): Promise<void> {
    try {
      await this.#ctx.d.store.deleteSession(sessionId);
    } catch (err) {
      // A record left behind is dropped by the next start, which finds no sandbox for it.
      this.#ctx.d.logger.warn({ session: sessionId, err }, "could not delete a session record");
    }
  }
}

function registryAuth(doc: PoolDoc, secrets: ReadonlyMap<string, string>): RegistryAuth | undefined {
  const rc = doc.properties.customContainerTemplate?.registryCredentials;
  if (!rc?.server || !rc.username || !rc.passwordSecretRef) return undefined;
  return { server: rc.server, username: rc.username, password: secrets.get(rc.passwordSecretRef) ?? "" };
}
