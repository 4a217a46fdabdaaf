// The server-wide bound on sandboxes: how many may live at once and how much memory their limits may commit
// together, across every pool. A pool's own maxConcurrentSessions bounds that pool; this bounds the host.
import { ServerCapacityError } from "../errors.ts";

export interface CapacityLimits {
  /** Live sandboxes (warm and allocated, every pool). */
  maxSandboxes: number;
  /** The sum of the live sandboxes' memory limits. */
  maxSandboxMemoryBytes: number;
}

const MiB = 1024 * 1024;
/** What an idle PythonLTS session costs the host, all included, rounded up: the default count follows from it. */
const IDLE_SANDBOX_BYTES = 12 * MiB;
/**
 * Memory limits are ceilings, and an idle session uses a few percent of its own: committing up to this many
 * times the host's memory lets warm pools be dense while a pool of huge sessions is still refused.
 */
const MEMORY_OVERCOMMIT = 8;

/** Defaults from the host's size: 2,048 sandboxes and 192 GiB of limits on a 24 GiB host. */
export function defaultCapacity(hostMemoryBytes: number): CapacityLimits {
  return {
    maxSandboxes: Math.max(16, Math.floor(hostMemoryBytes / IDLE_SANDBOX_BYTES)),
    maxSandboxMemoryBytes: hostMemoryBytes * MEMORY_OVERCOMMIT,
  };
}

function gib(bytes: number): string {
  return `${Math.round((bytes / (1024 * MiB)) * 100) / 100} GiB`;
}

export class SandboxCapacity {
  readonly limits: CapacityLimits;
  readonly #retryAfterSeconds: number;
  #sandboxes = 0;
  #memoryBytes = 0;

  constructor(limits: CapacityLimits, retryAfterSeconds = 5) {
    this.limits = limits;
    this.#retryAfterSeconds = retryAfterSeconds;
  }

  get used(): { sandboxes: number; memoryBytes: number } {
    return { sandboxes: this.#sandboxes, memoryBytes: this.#memoryBytes };
  }

  /** Takes room for one sandbox before it is created; ServerCapacityError (429) when there is none. */
  reserve(memoryBytes: number): void {
    const { maxSandboxes, maxSandboxMemoryBytes } = this.limits;
    if (this.#sandboxes + 1 > maxSandboxes) {
      throw new ServerCapacityError(
        `the server already runs its maximum of ${maxSandboxes} sandboxes across all pools (--max-sandboxes)`,
        this.#retryAfterSeconds,
      );
    }
    if (this.#memoryBytes + memoryBytes > maxSandboxMemoryBytes) {
      throw new ServerCapacityError(
        `a sandbox of ${gib(memoryBytes)} would take the memory committed to sandboxes past the server's ${gib(maxSandboxMemoryBytes)} (--max-sandbox-memory); ${gib(this.#memoryBytes)} is committed`,
        this.#retryAfterSeconds,
      );
    }
    this.#sandboxes++;
    this.#memoryBytes += memoryBytes;
  }

  /** Counts a sandbox that already runs (adopted after a restart), whatever the limits say now. */
  adopt(memoryBytes: number): void {
    this.#sandboxes++;
    this.#memoryBytes += memoryBytes;
  }

  release(memoryBytes: number): void {
    this.#sandboxes = Math.max(0, this.#sandboxes - 1);
    this.#memoryBytes = Math.max(0, this.#memoryBytes - memoryBytes);
  }

  /**
   * Why a pool of `maxSessions` sessions of `memoryBytes` each could never run here, or undefined when it could
   * (on an otherwise empty server).
   */
  unsatisfiable(maxSessions: number, memoryBytes: number): string | undefined {
    const { maxSandboxes, maxSandboxMemoryBytes } = this.limits;
    if (maxSessions > maxSandboxes) {
      return `scaleConfiguration.maxConcurrentSessions (${maxSessions}) is more than this server runs across all pools (${maxSandboxes}, --max-sandboxes)`;
    }
    if (maxSessions * memoryBytes > maxSandboxMemoryBytes) {
      return `scaleConfiguration.maxConcurrentSessions (${maxSessions}) sessions of ${gib(memoryBytes)} each would commit ${gib(maxSessions * memoryBytes)} of memory, more than this server commits to sandboxes (${gib(maxSandboxMemoryBytes)}, --max-sandbox-memory)`;
    }
    return undefined;
  }
}
