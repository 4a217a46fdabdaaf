// Short-lived data-plane tokens, one pool each: HS256 JWTs signed with a key from the data dir, so the server
// alone can verify them. Audience https://dynamicsessions.io, as Azure's data plane expects. A token names one
// incarnation of its pool (the pool's uid), so it dies with the pool: a pool deleted and re-created under the same
// name is a new pool, and the old pool's tokens are refused on every request.
import { errors, jwtVerify, SignJWT } from "jose";
import { AuthenticationError } from "./errors.ts";
import type { Authenticator, Principal } from "./principal.ts";

export const DATA_PLANE_AUDIENCE = "https://dynamicsessions.io";
const ISSUER = "sessionpool";
/** The claim carrying the pool's uid. */
const POOL_UID_CLAIM = "puid";

/** The uid of the pool under `poolKey` while it exists and is not being deleted; undefined otherwise. */
export type PoolUidLookup = (poolKey: string) => Promise<string | undefined>;

/**
 * Tokens whose signature and claims were verified, with what they said: a client sends the same token with every
 * request, and verifying its HMAC through WebCrypto took about 50 µs of the server's ~190 µs per execution
 * (--cpu-prof). Keyed by the whole token, signature included, so only a token verified before is found; its expiry
 * is checked on every use, and the pool's uid on every request as before. Bounded: the oldest goes first.
 */
const VERIFIED_TOKENS_MAX = 1024;

interface VerifiedToken {
  pool: string;
  uid: string;
  /** `exp`, seconds since the epoch. */
  exp: number;
}

export class PoolTokenService implements Authenticator {
  readonly #key: Uint8Array;
  readonly #ttlSeconds: number;
  readonly #currentUid: PoolUidLookup;
  readonly #verified = new Map<string, VerifiedToken>();

  constructor(signingKeyBase64: string, ttlSeconds: number, currentUid: PoolUidLookup) {
    this.#key = Buffer.from(signingKeyBase64, "base64");
    this.#ttlSeconds = ttlSeconds;
    this.#currentUid = currentUid;
  }

  async issue(pool: { key: string; uid: string }, now: Date): Promise<{ token: string; expires: Date }> {
    const iat = Math.floor(now.getTime() / 1000);
    const exp = iat + this.#ttlSeconds;
    const token = await new SignJWT({ pool: pool.key, [POOL_UID_CLAIM]: pool.uid })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(DATA_PLANE_AUDIENCE)
      .setSubject(`pool:${pool.key}`)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(crypto.randomUUID())
      .sign(this.#key);
    return { token, expires: new Date(exp * 1000) };
  }

  async authenticate(token: string): Promise<Principal | undefined> {
    if (token.split(".").length !== 3) return undefined;
    let verified = this.#verified.get(token);
    // jose's own rule: a token is expired once `exp` is not after now, in whole seconds.
    if (verified !== undefined && verified.exp <= Math.floor(Date.now() / 1000)) {
      this.#verified.delete(token);
      verified = undefined; // verified again below, which refuses it
    }
    if (verified === undefined) {
      verified = await this.#verify(token);
      if (verified === undefined) return undefined;
      if (this.#verified.size >= VERIFIED_TOKENS_MAX) {
        this.#verified.delete(this.#verified.keys().next().value!);
      }
      this.#verified.set(token, verified);
    }
    const { pool, uid } = verified;
    if ((await this.#currentUid(pool)) !== uid) {
      throw new AuthenticationError(
        "InvalidAuthenticationToken",
        "This token was issued for a session pool that has been deleted or is being deleted (a pool created again under the same name is a new pool); get a new token with getAuthtoken.",
      );
    }
    return { kind: "pool", name: `pool-token:${pool}`, nameType: "Key", poolKey: pool };
  }

  async #verify(token: string): Promise<VerifiedToken | undefined> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#key, {
        algorithms: ["HS256"],
        issuer: ISSUER,
        audience: DATA_PLANE_AUDIENCE,
        // jose checks exp only when present: a token that never expires must not verify at all.
        requiredClaims: ["exp", "pool", POOL_UID_CLAIM],
      }));
    } catch (err) {
      if (err instanceof errors.JOSEError) return undefined;
      throw err;
    }
    const { pool, exp } = payload;
    const uid = payload[POOL_UID_CLAIM];
    if (typeof pool !== "string" || typeof uid !== "string" || typeof exp !== "number") return undefined;
    return { pool, uid, exp };
  }
}
