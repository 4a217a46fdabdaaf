// The MCP server's API key of each pool: random, sealed in the store like the pool's secrets, made on first fetch
// and replaced by rotation. Every check reads the store, so a rotated key is refused from the next request on.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { SecretBox } from "../../auth/secret-box.ts";
import type { Store, StoredPool } from "../../store/store.ts";

/** 32 random bytes, base64url: 43 characters, safe in a header and a JSON config. */
function newKey(): string {
  return randomBytes(32).toString("base64url");
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

export class McpKeys {
  readonly #store: Store;
  readonly #box: SecretBox;

  constructor(store: Store, box: SecretBox) {
    this.#store = store;
    this.#box = box;
  }

  /** The pool's key, made now when it has none (or only one of an earlier pool of the same name). */
  fetch(pool: StoredPool): Promise<string> {
    return this.#store.transaction(async () => {
      const stored = await this.#store.getMcpKey(pool.key);
      if (stored && stored.poolUid === pool.uid) return this.#box.open(stored.sealed);
      return this.#put(pool);
    });
  }

  /** A new key for the pool; the old one is refused from now on. */
  rotate(pool: StoredPool): Promise<string> {
    return this.#store.transaction(() => this.#put(pool));
  }

  /** Whether `presented` is the pool's current key; compared in constant time (over digests of equal length). */
  async verify(pool: StoredPool, presented: string): Promise<boolean> {
    const stored = await this.#store.getMcpKey(pool.key);
    if (!stored || stored.poolUid !== pool.uid) return false;
    return timingSafeEqual(digest(this.#box.open(stored.sealed)), digest(presented));
  }

  async #put(pool: StoredPool): Promise<string> {
    const key = newKey();
    await this.#store.putMcpKey(pool.key, { poolUid: pool.uid, sealed: this.#box.seal(key) });
    return key;
  }
}
