// A fleet: several servers on one shared store, each driving its own engine. Each server says it is alive with a
// heartbeat (its address, capacity, engine health, and the ready and allocated sessions it holds per pool); every
// server reads the others' from the store. From that:
//   - where a session's requests go (route): to the server whose engine holds its sandbox;
//   - where a new session starts: here when this server has a ready sandbox for the pool, else on the server that
//     has the most, else here (a cold start) unless this server is full and another has room;
//   - how the pool's ready sandboxes are spread (readyShare): the pool's readySessionInstances split over the live
//     servers whose engine answers;
//   - the fleet-wide chores run by one server at a time, under a lease in the store (the janitor).
import type { Logger } from "pino";
import type { Store, StoredMember, StoredSession } from "../../store/store.ts";
import { SessionMovedError } from "../errors.ts";
import type { FleetRouting, Route } from "./fleet-routing.ts";

/** What the fleet needs to know of this server's own sessions (the session manager answers). */
export interface LocalSessions {
  /** Whether this server holds the identifier's session now. */
  holds(poolKey: string, identifier: string): boolean;
  /** Ready and allocated sessions per pool key, for the heartbeat. */
  counts(): { ready: Record<string, number>; allocated: Record<string, number> };
  /** How many more sandboxes this server will take. */
  capacity(): number;
  engineUp(): boolean;
  /** The identifier's session was lost with its server: its next session says so (replaced). */
  markReplaced(poolKey: string, identifier: string): void;
  /** The live servers changed: shares of the pools' ready sandboxes changed with them. */
  membersChanged(): void;
  /**
   * Ends this server's sessions allocated before `before` (epoch ms) whose records are no longer this server's:
   * another server took this one for gone and started them afresh. Returns how many it ended.
   */
  endMoved(isOwn: (sessionId: string) => boolean, before: number): Promise<number>;
}

export interface FleetOptions {
  store: Store;
  selfId: string;
  /** Where the other servers reach this one (read at each heartbeat: known once the server listens). */
  address: () => string;
  local: LocalSessions;
  logger: Logger;
  heartbeatMs?: number;
  /** A server not heard from for this long is gone: its sessions are lost, its share goes to the others. */
  liveWindowMs?: number;
}

const JANITOR_LEASE = "fleet-janitor";
/** How often (in heartbeats) a server checks that the sessions it holds are still its own. */
const OWNERSHIP_CHECK_BEATS = 3;
/** "Heard from ever": a window longer than any member lives. */
const EVER_MS = 10 * 365 * 24 * 3600 * 1000;

export class Fleet implements FleetRouting {
  readonly selfId: string;
  readonly #o: Required<FleetOptions>;
  readonly #startedAt = new Date().toISOString();
  #members: StoredMember[] = [];
  #byId = new Map<string, StoredMember>();
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #closed = false;
  #janitor = false;
  #beats = 0;

  constructor(options: FleetOptions) {
    this.#o = { heartbeatMs: 1000, liveWindowMs: 5000, ...options };
    this.selfId = options.selfId;
  }

  /** Joins: the first heartbeat is written before the server takes requests. */
  async start(): Promise<void> {
    await this.#beat();
    this.#timer = setInterval(() => {
      this.#beating ??= this.#beat().finally(() => {
        this.#beating = undefined;
      });
    }, this.#o.heartbeatMs);
    this.#timer.unref();
  }

  /** The live servers (this one included once its heartbeat is in), ordered by id. */
  members(): readonly StoredMember[] {
    return this.#members;
  }

  peers(): readonly StoredMember[] {
    return this.#members.filter((m) => m.id !== this.selfId);
  }

  /** Whether this server holds the fleet-wide chores now. */
  get isJanitor(): boolean {
    return this.#janitor;
  }

  async route(poolKey: string, identifier: string, options: { forwarded: boolean }): Promise<Route> {
    const local = this.#o.local;
    if (local.holds(poolKey, identifier)) return { kind: "local" };
    const rec = await this.#o.store.findSession(poolKey, identifier);
    if (rec?.owner !== undefined && rec.owner !== this.selfId) {
      const owner = this.#byId.get(rec.owner);
      if (owner) {
        // The server that forwarded it saw the session elsewhere a moment ago; it moved (or ended) meanwhile.
        if (options.forwarded) throw new SessionMovedError(identifier);
        return { kind: "forward", member: owner };
      }
      // Its server is gone (no heartbeat within the window): the session went with it. A fresh one starts here,
      // and says it replaced one.
      await this.#forget(rec);
      local.markReplaced(poolKey, identifier);
      return { kind: "local" };
    }
    if (rec || options.forwarded) return { kind: "local" };
    const counts = local.counts();
    if ((counts.ready[poolKey] ?? 0) > 0) return { kind: "local" };
    let best: StoredMember | undefined;
    for (const m of this.peers()) {
      const ready = m.ready[poolKey] ?? 0;
      if (ready > 0 && m.engineUp && ready > (best?.ready[poolKey] ?? 0)) best = m;
    }
    if (best) return { kind: "forward", member: best };
    // No ready sandbox anywhere: a cold start, here, unless this server is full (or its engine is down) and another
    // has room.
    if (local.capacity() > 0 && local.engineUp()) return { kind: "local" };
    let roomiest: StoredMember | undefined;
    for (const m of this.peers()) {
      if (m.engineUp && m.capacity > (roomiest?.capacity ?? 0)) roomiest = m;
    }
    return roomiest ? { kind: "forward", member: roomiest } : { kind: "local" };
  }

  /**
   * This server's part of a pool's `total` ready sandboxes: the total split evenly over the live servers whose
   * engine answers, the remainder going to the servers a rotation by pool picks (so two pools of one ready session
   * do not both land on the same server). Alone, or not yet in the list, it is the whole.
   */
  readyShare(poolKey: string, total: number): number {
    const up = this.#members.filter((m) => m.engineUp || m.id === this.selfId);
    const index = up.findIndex((m) => m.id === this.selfId);
    if (index < 0 || up.length <= 1) return total;
    const n = up.length;
    const base = Math.floor(total / n);
    const rotated = (index + rotation(poolKey)) % n;
    return base + (rotated < total % n ? 1 : 0);
  }

  /** The sessions of a pool allocated on the other servers (as of their last heartbeats). */
  allocatedElsewhere(poolKey: string): number {
    let sum = 0;
    for (const m of this.peers()) sum += m.allocated[poolKey] ?? 0;
    return sum;
  }

  /** Leaves: the others take over this server's share at once instead of after the live window. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#beating?.catch(() => undefined);
    try {
      await this.#o.store.removeMember(this.selfId);
      if (this.#janitor) await this.#o.store.releaseLease(JANITOR_LEASE, this.selfId);
    } catch (err) {
      this.#o.logger.warn(
        { err },
        "could not leave the fleet cleanly; the others will notice within seconds",
      );
    }
  }

  async #beat(): Promise<void> {
    if (this.#closed) return;
    const { store, local, logger } = this.#o;
    try {
      const counts = local.counts();
      await store.heartbeat({
        id: this.selfId,
        address: this.#o.address(),
        capacity: local.capacity(),
        engineUp: local.engineUp(),
        ready: counts.ready,
        allocated: counts.allocated,
        startedAt: this.#startedAt,
      });
      const members = await store.liveMembers(this.#o.liveWindowMs);
      const before = this.#members.map((m) => `${m.id}:${m.engineUp}`).join(",");
      this.#members = members;
      this.#byId = new Map(members.map((m) => [m.id, m]));
      if (members.map((m) => `${m.id}:${m.engineUp}`).join(",") !== before) {
        logger.info(
          { members: members.map((m) => ({ id: m.id, address: m.address })) },
          "fleet members changed",
        );
        local.membersChanged();
      }
      this.#janitor = await store.lease(JANITOR_LEASE, this.selfId, this.#o.liveWindowMs);
      const checkOwnership = ++this.#beats % OWNERSHIP_CHECK_BEATS === 0;
      if (this.#janitor || checkOwnership) {
        // One read of the session records serves both chores.
        const readAt = Date.now();
        const sessions = await store.allSessions();
        if (this.#janitor) await this.#sweep(sessions);
        if (checkOwnership) await this.#checkOwnership(sessions, readAt);
      }
    } catch (err) {
      // The store is unreachable: the server keeps serving what it holds and tries again on the next beat.
      logger.warn({ err }, "fleet heartbeat failed");
    }
  }

  /**
   * The janitor's sweep: records of servers gone for good. A gone server's warm sandboxes were never handed out
   * (their records are dropped at once); its allocated sessions' records stay until they would have expired, so a
   * request for one is told its session was replaced; a server silent for ten live windows leaves the list.
   */
  async #sweep(sessions: readonly StoredSession[]): Promise<void> {
    const { store } = this.#o;
    const now = Date.now();
    for (const rec of sessions) {
      if (rec.owner === undefined || this.#byId.has(rec.owner)) continue;
      const expired = rec.expiresAt !== undefined && Date.parse(rec.expiresAt) < now;
      if (rec.state !== "allocated" || expired) await this.#forget(rec);
    }
    const recent = new Set((await store.liveMembers(this.#o.liveWindowMs * 10)).map((m) => m.id));
    for (const m of await store.liveMembers(EVER_MS)) {
      if (!recent.has(m.id)) await store.removeMember(m.id);
    }
  }

  /**
   * A server that could not write its heartbeat for longer than the window (paused, or cut off from the store)
   * while it kept running was taken for gone: its sessions asked for meanwhile started afresh elsewhere. Its own
   * copies must not go on answering requests that reach it directly, so it ends those whose records it no longer
   * owns. Only sessions allocated well before the read at `readAt` (a claim's record is written before it is
   * handed out).
   */
  async #checkOwnership(sessions: readonly StoredSession[], readAt: number): Promise<void> {
    const before = readAt - this.#o.liveWindowMs;
    const own = new Set(sessions.filter((s) => s.owner === this.selfId).map((s) => s.id));
    const ended = await this.#o.local.endMoved((id) => own.has(id), before);
    if (ended > 0) {
      this.#o.logger.warn(
        { ended },
        "ended sessions that other servers started afresh while this one was away",
      );
    }
  }

  async #forget(rec: StoredSession): Promise<void> {
    await this.#o.store.deleteSession(rec.id);
  }
}

/** A pool's place in the rotation of remainders: the same on every server. */
function rotation(poolKey: string): number {
  let h = 0;
  for (let i = 0; i < poolKey.length; i++) h = (h * 31 + poolKey.charCodeAt(i)) >>> 0;
  return h;
}
