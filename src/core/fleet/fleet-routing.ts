// What the data plane asks of the fleet: where a session's requests are served. A fleet is several servers on one
// shared store (PostgreSQL), each driving its own engine; a session lives in the sandbox of one of them, and a
// request that reaches another is forwarded there.
import type { StoredMember } from "../../store/store.ts";

/** The header a forwarded request carries: the id of the server that forwarded it. Never forwarded again. */
export const FORWARDED_BY_HEADER = "x-sessionpool-forwarded-by";

export type Route =
  /** Serve it here. */
  | { kind: "local" }
  /** Forward it to `member` (its `address` is the base URL to send the same path and query to). */
  | { kind: "forward"; member: StoredMember };

export interface FleetRouting {
  /** This server's instance id. */
  readonly selfId: string;
  /**
   * Where a request for `identifier` in the pool is served. `forwarded`: it came from another server, which
   * already decided; it is served here (or refused with a retryable error), never sent on.
   */
  route(poolKey: string, identifier: string, options: { forwarded: boolean }): Promise<Route>;
  /** The other live servers (for fan-out reads such as listSessions). */
  peers(): readonly StoredMember[];
}
