// SandboxDriver over the Docker Engine API (dockerode): hardened containers, isolated networks, label-owned.
// Engine answers become runtime errors here and nowhere else.

import { randomBytes } from "node:crypto";
import { Agent } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";
import Docker from "dockerode";
import { ImageNotFoundError, RuntimeUnavailableError, SandboxCreateError } from "../../errors.ts";
import type {
  CallOptions,
  ImageInfo,
  RegistryAuth,
  SandboxDriver,
  SandboxEvent,
  SandboxInfo,
  SandboxSpec,
  SandboxUsage,
  UsageOptions,
} from "../../sandbox-driver.ts";
import type { EngineRuntime } from "../../sandbox-runtime.ts";
import {
  containerCreateOptions,
  describeEndpoint,
  infoFromInspect,
  infoFromList,
  labelFilters,
  modemOptions,
} from "./container-config.ts";
import {
  callEngine,
  type DeadlineContext,
  engineMessage,
  statusCodeOf,
  unavailable,
} from "./docker-errors.ts";
import { watchSandboxEvents } from "./docker-events.ts";
import { inspectImage, pullFailure, pullImage } from "./docker-images.ts";
import { SandboxNetworks } from "./docker-network.ts";
import { HostFirewall } from "./host-firewall.ts";

export interface DockerDriverLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface DockerDriverOptions {
  /** A DOCKER_HOST string (unix:///var/run/docker.sock, tcp://host:2375); the local socket when absent. */
  dockerHost?: string;
  logger?: DockerDriverLogger;
  /** Docker network for sandboxes with network "egress" (default "sessionpool-egress"). */
  egressNetworkName?: string;
  /** Host interface name of the egress bridge, at most 15 characters (default "sp-egress0"). */
  egressBridgeName?: string;
  /** Docker network for sandboxes with network "internal" (default "sessionpool-internal"). */
  internalNetworkName?: string;
  /** Host interface name of the internal bridge (default "sp-internal0"). */
  internalBridgeName?: string;
  /**
   * IPv4 resolvers egress sandboxes may reach on port 53 although they sit in a private range, typically the
   * host's own nameservers (the engine's embedded DNS forwards sandbox queries from the sandbox itself).
   */
  egressDnsServers?: string[];
  /** Deadline of every engine call without a more specific one (default 30 s). */
  timeoutMs?: number;
  /** Deadline of an image pull (default 10 min). */
  pullTimeoutMs?: number;
  /** Binaries used for the host firewall (default "iptables" and "ip6tables" from PATH). */
  iptablesPath?: string;
  ip6tablesPath?: string;
}

const NO_LOG: DockerDriverLogger = { debug() {}, info() {}, warn() {}, error() {} };
const CLEANUP_TIMEOUT_MS = 30_000;
const NETWORKS: ReadonlySet<string> = new Set<SandboxSpec["network"]>(["none", "internal", "egress"]);

export class DockerDriver implements SandboxDriver {
  readonly name = "docker";
  readonly #docker: Docker;
  readonly #agent: Agent;
  readonly #endpoint: string;
  readonly #logger: DockerDriverLogger;
  readonly #timeoutMs: number;
  readonly #pullTimeoutMs: number;
  readonly #networks: SandboxNetworks;
  readonly #watchers = new Set<() => void>();
  #closed = false;

  constructor(options: DockerDriverOptions = {}) {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const pullTimeoutMs = options.pullTimeoutMs ?? 600_000;
    for (const [name, value] of [
      ["timeoutMs", timeoutMs],
      ["pullTimeoutMs", pullTimeoutMs],
    ] as const) {
      if (!Number.isSafeInteger(value) || value <= 0)
        throw new TypeError(`${name} (${value}) must be a positive integer`);
    }
    const dnsServers = options.egressDnsServers ?? [];
    for (const server of dnsServers) {
      if (!/^(\d{1,3})(\.\d{1,3}){3}$/.test(server))
        throw new TypeError(`egressDnsServers: '${server}' is not an IPv4 address`);
    }
    const connection = modemOptions(options.dockerHost);
    this.#agent = new Agent({ keepAlive: true });
    // docker-modem util.inspect()s every request's options (agent included, every pooled socket with it) even
    // with debugging off: 5-6 ms of CPU per engine call, paid by whatever request shares the event loop.
    Object.defineProperty(this.#agent, inspect.custom, { value: () => "[docker keep-alive agent]" });
    this.#docker = new Docker({ ...connection, agent: this.#agent } as Docker.DockerOptions);
    this.#endpoint = describeEndpoint(connection);
    this.#logger = options.logger ?? NO_LOG;
    this.#timeoutMs = timeoutMs;
    this.#pullTimeoutMs = pullTimeoutMs;
    const firewall = new HostFirewall({
      iptables: options.iptablesPath ?? "iptables",
      ip6tables: options.ip6tablesPath ?? "ip6tables",
      egressDnsServers: dnsServers,
      logger: this.#logger,
    });
    this.#networks = new SandboxNetworks(
      this.#docker,
      firewall,
      {
        egress: {
          name: options.egressNetworkName ?? "sessionpool-egress",
          bridge: options.egressBridgeName ?? "sp-egress0",
        },
        internal: {
          name: options.internalNetworkName ?? "sessionpool-internal",
          bridge: options.internalBridgeName ?? "sp-internal0",
        },
      },
      this.#logger,
      timeoutMs,
    );
  }

  async ping(options?: CallOptions): Promise<void> {
    const context = this.#context("answering a ping");
    // @types/dockerode declares no options for ping; dockerode passes abortSignal through.
    const ping = this.#docker.ping.bind(this.#docker) as (options: {
      abortSignal: AbortSignal;
    }) => Promise<unknown>;
    await callEngine(context, options, (signal) => ping({ abortSignal: signal }), unavailable(context));
  }

  async runtimes(options?: CallOptions): Promise<EngineRuntime[]> {
    const context = this.#context("listing its runtimes");
    // @types/dockerode declares neither the options nor Runtimes; dockerode passes abortSignal through.
    const info = this.#docker.info.bind(this.#docker) as (options: {
      abortSignal: AbortSignal;
    }) => Promise<{ Runtimes?: Record<string, { runtimeArgs?: string[] }> }>;
    const { Runtimes: runtimes = {} } = await callEngine(
      context,
      options,
      (signal) => info({ abortSignal: signal }),
      unavailable(context),
    );
    return Object.entries(runtimes).map(([name, r]) => ({ name, args: r.runtimeArgs ?? [] }));
  }

  async getImage(ref: string, options?: CallOptions): Promise<ImageInfo | undefined> {
    const context = this.#context(`inspecting image '${ref}'`);
    return callEngine(context, options, () => inspectImage(this.#docker, ref), unavailable(context));
  }

  async pullImage(ref: string, auth?: RegistryAuth, options?: CallOptions): Promise<ImageInfo> {
    const context = this.#context(`pulling image '${ref}'`, this.#pullTimeoutMs);
    return callEngine(
      context,
      options,
      (signal) => pullImage(this.#docker, ref, auth, signal),
      (err) => pullFailure(ref, auth, engineMessage(err), err),
    );
  }

  async create(spec: SandboxSpec, options?: CallOptions): Promise<SandboxInfo> {
    this.#assertOpen();
    if (!NETWORKS.has(spec.network)) {
      throw new SandboxCreateError(`network '${spec.network}' is not one of "none", "internal", "egress"`);
    }
    const name = `sp-${randomBytes(8).toString("hex")}`;
    const context = this.#context(`creating sandbox '${name}'`);
    let containerId: string | undefined;
    let work: Promise<SandboxInfo> | undefined;
    try {
      return await callEngine(
        context,
        options,
        (signal) =>
          (work = (async () => {
            const networkMode = spec.network === "none" ? "none" : await this.#networks.ensure(spec.network);
            const config = containerCreateOptions(spec, name, networkMode);
            let container: Docker.Container;
            try {
              // Not aborted half-way: the engine goes on creating a container whose request was cut, and would
              // register it only after the clean-up below had looked for it. The create is short; once it has
              // answered, the abort is honoured and the clean-up removes the container by id.
              container = await this.#docker.createContainer(config);
            } catch (err) {
              if (
                statusCodeOf(err) === 404 &&
                /network/i.test(engineMessage(err)) &&
                spec.network !== "none"
              ) {
                this.#networks.invalidate(spec.network);
              }
              throw err;
            }
            containerId = container.id;
            signal.throwIfAborted();
            await container.start({ abortSignal: signal });
            const info = infoFromInspect(await container.inspect({ abortSignal: signal }));
            this.#logger.debug(
              { sandboxId: info.id.slice(0, 12), name, network: spec.network },
              "sandbox started",
            );
            return info;
          })()),
        (err) => createFailure(spec, err),
      );
    } catch (err) {
      // Nothing left behind. An abort or deadline returns before the work settles; its engine calls see the
      // same aborted signal, so wait (bounded) for it to stop before removing what it made.
      if (work) {
        const settled = await Promise.race([
          work.then(
            () => true,
            () => true,
          ),
          sleep(CLEANUP_TIMEOUT_MS, false, { ref: false }),
        ]);
        // An engine slower than that: whatever its create makes is removed once it answers.
        if (!settled) void work.catch(() => {}).finally(() => this.#removeQuietly(containerId ?? name));
      }
      // By id when the engine answered the create, else by name.
      await this.#removeQuietly(containerId ?? name);
      throw err;
    }
  }

  async inspect(id: string, options?: CallOptions): Promise<SandboxInfo | undefined> {
    const context = this.#context(`inspecting sandbox '${id}'`);
    return callEngine(
      context,
      options,
      async (signal) => {
        try {
          return infoFromInspect(await this.#docker.getContainer(id).inspect({ abortSignal: signal }));
        } catch (err) {
          if (statusCodeOf(err) === 404) return undefined;
          throw err;
        }
      },
      unavailable(context),
    );
  }

  async list(labels: Record<string, string>, options?: CallOptions): Promise<SandboxInfo[]> {
    const context = this.#context("listing sandboxes");
    return callEngine(
      context,
      options,
      async (signal) => {
        const containers = await this.#docker.listContainers({
          all: true,
          filters: { label: labelFilters(labels) },
          abortSignal: signal,
        });
        return containers.map(infoFromList);
      },
      unavailable(context),
    );
  }

  async remove(id: string, options?: CallOptions): Promise<void> {
    const context = this.#context(`removing sandbox '${id}'`);
    await callEngine(
      context,
      options,
      async (signal) => {
        try {
          await this.#docker.getContainer(id).remove({ force: true, v: true, abortSignal: signal } as object);
        } catch (err) {
          const status = statusCodeOf(err);
          // Gone already, or the engine is already removing it: either way it will not be there.
          if (status === 404 || (status === 409 && /already in progress/i.test(engineMessage(err)))) return;
          throw err;
        }
      },
      unavailable(context),
    );
  }

  /**
   * Memory the sandbox uses, as `docker stats` shows it (see memoryOf). undefined when the sandbox does not exist
   * or is not running.
   */
  async memoryUsageBytes(id: string, options?: CallOptions): Promise<number | undefined> {
    const stats = await this.#stats(id, options);
    return stats === undefined ? undefined : (memoryOf(stats) ?? undefined);
  }

  /**
   * CPU seconds and memory from one one-shot stats sample. Under runc the engine reads the container's cgroup;
   * under gVisor (runsc) the shim asks the sandbox (`runsc events --stats`), which reports the same fields:
   * `cpu_stats.cpu_usage.total_usage` (ns) and `memory_stats` (the sandbox's memory, its tmpfs files included).
   */
  async usage(id: string, options?: UsageOptions): Promise<SandboxUsage | undefined> {
    const stats = await this.#stats(id, options, options?.timeoutMs);
    if (stats === undefined) return undefined;
    const total = stats.cpu_stats?.cpu_usage?.total_usage;
    // A runtime that reports no total (none we know of does) gets null rather than a guess.
    const cpuSeconds = typeof total === "number" && Number.isFinite(total) ? total / 1e9 : null;
    return { cpuSeconds, memoryBytes: memoryOf(stats) };
  }

  /** One stats sample; undefined when the sandbox does not exist or is not running (nothing was sampled). */
  async #stats(id: string, options?: CallOptions, timeoutMs?: number): Promise<EngineStats | undefined> {
    const context = this.#context(`reading statistics of sandbox '${id}'`, timeoutMs);
    return callEngine(
      context,
      options,
      async (signal) => {
        let stats: EngineStats;
        try {
          // one-shot (API 1.41+): answer at once instead of waiting a second for a second CPU sample.
          stats = (await this.#docker
            .getContainer(id)
            .stats({ stream: false, "one-shot": true, abortSignal: signal } as object)) as EngineStats;
        } catch (err) {
          if (statusCodeOf(err) === 404) return undefined;
          throw err;
        }
        // A sandbox that is not running answers zeroed statistics read at the zero time.
        if (typeof stats.read === "string" && stats.read.startsWith("0001-")) return undefined;
        return stats;
      },
      unavailable(context),
    );
  }

  watch(
    labels: Record<string, string>,
    onEvent: (event: SandboxEvent) => void,
    onResubscribed?: () => void,
  ): () => void {
    this.#assertOpen();
    const stop = watchSandboxEvents(this.#docker, labels, onEvent, this.#logger, onResubscribed);
    const unsubscribe = () => {
      if (this.#watchers.delete(unsubscribe)) stop();
    };
    this.#watchers.add(unsubscribe);
    return unsubscribe;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const unsubscribe of [...this.#watchers]) unsubscribe();
    this.#agent.destroy();
  }

  #context(what: string, timeoutMs = this.#timeoutMs): DeadlineContext {
    this.#assertOpen();
    return { what, timeoutMs, endpoint: this.#endpoint };
  }

  #assertOpen(): void {
    if (this.#closed) throw new RuntimeUnavailableError("the docker driver is closed");
  }

  async #removeQuietly(idOrName: string): Promise<void> {
    try {
      await this.remove(idOrName, { signal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS) });
    } catch (err) {
      // The labels still own it: orphan removal will find it.
      this.#logger.warn({ err, sandbox: idOrName }, "could not remove a sandbox after a failed create");
    }
  }
}

/** The fields of the engine's stats answer read here. */
interface EngineStats {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number } };
  memory_stats?: { usage?: number; stats?: Record<string, number> };
}

/**
 * Memory as `docker stats` shows it: usage minus inactive page cache (cgroup v1: `total_inactive_file`, v2:
 * `inactive_file`), since reclaimable file cache is not what the sandbox costs the host. null when the engine
 * reported no usage.
 */
function memoryOf(stats: EngineStats): number | null {
  const usage = stats.memory_stats?.usage;
  if (typeof usage !== "number") return null;
  const detail = stats.memory_stats?.stats ?? {};
  const inactive = detail["total_inactive_file"] ?? detail["inactive_file"] ?? 0;
  return inactive < usage ? usage - inactive : usage;
}

function createFailure(spec: SandboxSpec, err: unknown): Error {
  const message = engineMessage(err);
  if (statusCodeOf(err) === 404 && /no such image/i.test(message)) {
    return new ImageNotFoundError(spec.image, "it is not present locally; pull it first", err);
  }
  return new SandboxCreateError(`the docker engine could not create the sandbox: ${message}`, err);
}
