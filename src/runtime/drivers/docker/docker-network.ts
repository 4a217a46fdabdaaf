// The two bridge networks networked sandboxes join, created on first use and checked for the settings that
// isolate them (no inter-container traffic; "internal" has no route out), with the host firewall in front.
import type Docker from "dockerode";
import { isSessionPoolError } from "../../../errors.ts";
import { RuntimeUnavailableError, SandboxCreateError } from "../../errors.ts";
import { buildLabels } from "../../labels.ts";
import type { DockerDriverLogger } from "./docker-driver.ts";
import { engineMessage, isUnreachable, raceSignal, statusCodeOf } from "./docker-errors.ts";
import type { HostFirewall } from "./host-firewall.ts";

export type NetworkKind = "internal" | "egress";

export interface SandboxNetwork {
  /** Docker network name. */
  name: string;
  /** Host interface of the bridge (at most 15 characters); the firewall rules match on it. */
  bridge: string;
}

const BRIDGE_NAME = "com.docker.network.bridge.name";
const ENABLE_ICC = "com.docker.network.bridge.enable_icc";
const ENABLE_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade";

export class SandboxNetworks {
  readonly #docker: Docker;
  readonly #firewall: HostFirewall;
  readonly #networks: Record<NetworkKind, SandboxNetwork>;
  readonly #logger: DockerDriverLogger;
  readonly #timeoutMs: number;
  readonly #ready = new Map<NetworkKind, Promise<string>>();

  constructor(
    docker: Docker,
    firewall: HostFirewall,
    networks: Record<NetworkKind, SandboxNetwork>,
    logger: DockerDriverLogger,
    timeoutMs: number,
  ) {
    for (const network of Object.values(networks)) {
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(network.bridge)) {
        throw new TypeError(
          `bridge interface name '${network.bridge}' must be 1-15 letters, digits, '_', '.' or '-'`,
        );
      }
    }
    this.#docker = docker;
    this.#firewall = firewall;
    this.#networks = networks;
    this.#logger = logger;
    this.#timeoutMs = timeoutMs;
  }

  network(kind: NetworkKind): SandboxNetwork {
    return this.#networks[kind];
  }

  /**
   * Resolves with the network name once the network exists with isolating settings and the firewall protects
   * its bridge. Shared by concurrent callers (each races it against its own signal), so it runs under its
   * own deadline; a failure is forgotten so the next create tries again.
   */
  ensure(kind: NetworkKind): Promise<string> {
    let ready = this.#ready.get(kind);
    if (!ready) {
      const signal = AbortSignal.timeout(this.#timeoutMs);
      ready = this.#prepare(kind, signal).catch((err: unknown) => {
        if (signal.aborted && !isSessionPoolError(err)) {
          throw new RuntimeUnavailableError(
            `preparing network '${this.#networks[kind].name}' took longer than ${this.#timeoutMs} ms`,
            err,
          );
        }
        throw err;
      });
      this.#ready.set(kind, ready);
      ready.catch(() => this.#ready.delete(kind));
    }
    return ready;
  }

  /** Forget that a network is ready (e.g. the engine said it is gone): the next ensure checks again. */
  invalidate(kind: NetworkKind): void {
    this.#ready.delete(kind);
  }

  async #prepare(kind: NetworkKind, signal: AbortSignal): Promise<string> {
    const { name, bridge } = this.#networks[kind];
    // Firewall first: a sandbox must never run on a bridge the host cannot fence in.
    await this.#firewall.protectBridge(bridge, kind);
    let existing = await this.#inspect(name, signal);
    if (!existing) {
      try {
        await this.#docker.createNetwork({
          Name: name,
          Driver: "bridge",
          CheckDuplicate: true,
          Internal: kind === "internal",
          Attachable: false,
          EnableIPv6: false,
          Options: {
            [BRIDGE_NAME]: bridge,
            [ENABLE_ICC]: "false",
            ...(kind === "egress" ? { [ENABLE_MASQUERADE]: "true" } : {}),
          },
          Labels: buildLabels({ kind: "network" }),
          abortSignal: signal,
        } as Docker.NetworkCreateOptions);
        this.#logger.info({ network: name, bridge, kind }, "created sandbox network");
      } catch (err) {
        // 409: another caller (or server) created it first; use theirs if it is right.
        if (statusCodeOf(err) !== 409) throw this.#error(`creating network '${name}'`, err);
      }
      existing = await this.#inspect(name, signal);
      if (!existing) throw new SandboxCreateError(`network '${name}' vanished right after it was created`);
    }
    this.#verify(kind, existing);
    return name;
  }

  async #inspect(name: string, signal: AbortSignal): Promise<Docker.NetworkInspectInfo | undefined> {
    try {
      // dockerode's network inspect takes no signal: race it.
      return await raceSignal<Docker.NetworkInspectInfo>(this.#docker.getNetwork(name).inspect(), signal);
    } catch (err) {
      if (statusCodeOf(err) === 404) return undefined;
      throw this.#error(`inspecting network '${name}'`, err);
    }
  }

  /** Refuses a same-named network someone made without our isolation settings rather than run sandboxes on it. */
  #verify(kind: NetworkKind, info: Docker.NetworkInspectInfo): void {
    const { name, bridge } = this.#networks[kind];
    const options = info.Options ?? {};
    const problems: string[] = [];
    if (info.Driver !== "bridge") problems.push(`driver is '${info.Driver}', not 'bridge'`);
    if (info.Internal !== (kind === "internal")) problems.push(`internal is ${info.Internal}`);
    if (options[BRIDGE_NAME] !== bridge)
      problems.push(`bridge interface is '${options[BRIDGE_NAME] ?? "(auto)"}'`);
    if (options[ENABLE_ICC] !== "false") problems.push("inter-container traffic is enabled");
    if (info.EnableIPv6) problems.push("IPv6 is enabled");
    if (problems.length > 0) {
      throw new SandboxCreateError(
        `network '${name}' exists but cannot isolate sandboxes (${problems.join("; ")}); ` +
          `remove it ('docker network rm ${name}') and sessionpool will recreate it`,
      );
    }
  }

  #error(what: string, err: unknown): unknown {
    // Unreachable engines and aborts are translated by the caller's deadline wrapper.
    if (isUnreachable(err) || (err as Error | undefined)?.name === "AbortError") return err;
    return new SandboxCreateError(`the docker engine failed ${what}: ${engineMessage(err)}`, err);
  }
}
