// Short-lived data-plane tokens, one pool each: HS256 JWTs signed with a key from the data dir, so the server
// alone can verify them. Audience https://dynamicsessions.io, as Azure's data plane expects.
import { errors, jwtVerify, SignJWT } from "jose";
import type { Authenticator, Principal } from "./principal.ts";

export const DATA_PLANE_AUDIENCE = "https://dynamicsessions.io";
const ISSUER = "sessionpool";

export class PoolTokenService implements Authenticator {
  readonly #key: Uint8Array;
  readonly #ttlSeconds: number;

  constructor(signingKeyBase64: string, ttlSeconds = 3600) {
    this.#key = Buffer.from(signingKeyBase64, "base64");
    this.#ttlSeconds = ttlSeconds;
  }

  async issue(poolKey: string, now: Date): Promise<{ token: string; expires: Date }> {
    const iat = Math.floor(now.getTime() / 1000);
    const exp = iat + this.#ttlSeconds;
    const token = await new SignJWT({ pool: poolKey })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(DATA_PLANE_AUDIENCE)
      .setSubject(`pool:${poolKey}`)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(crypto.randomUUID())
      .sign(this.#key);
    return { token, expires: new Date(exp * 1000) };
  }

  async authenticate(token: string): Promise<Principal | undefined> {
    if (token.split(".").length !== 3) return undefined;
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: ["HS256"],
        issuer: ISSUER,
        audience: DATA_PLANE_AUDIENCE,
      });
      const pool = payload["pool"];
      if (typeof pool !== "string") return undefined;
      return { kind: "pool", name: `pool-token:${pool}`, nameType: "Key", poolKey: pool };
    } catch (err) {
      if (err instanceof errors.JOSEError) return undefined;
      throw err;
    }
  }
}
