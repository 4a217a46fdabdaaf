// A pool's secrets: sealed in the store, opened only for a sandbox being created. Built from the store before the
// pool service and the session manager, which both use it, so neither has to reach the other for secrets.
import type { SecretBox } from "../../auth/secret-box.ts";
import type { Store, StoredSecret } from "../../store/store.ts";
import type { SecretInput } from "./pool-spec.ts";

export class PoolSecrets {
  readonly #store: Store;
  readonly #box: SecretBox;

  constructor(store: Store, box: SecretBox) {
    this.#store = store;
    this.#box = box;
  }

  /** The names of the pool's secrets (what a `secretRef` may name). */
  async names(poolKey: string): Promise<Set<string>> {
    return new Set((await this.#store.getSecrets(poolKey)).map((s) => s.name));
  }

  /** The secret values, opened, for a sandbox being created. Never logged, never returned by the API. */
  async values(poolKey: string): Promise<Map<string, string>> {
    return new Map((await this.#store.getSecrets(poolKey)).map((s) => [s.name, this.#box.open(s.sealed)]));
  }

  /** `secrets` sealed for the store: a new value is sealed, a secret given without one keeps its sealed value. */
  async seal(poolKey: string, secrets: SecretInput[]): Promise<StoredSecret[]> {
    const current = new Map((await this.#store.getSecrets(poolKey)).map((s) => [s.name, s.sealed]));
    return secrets.map((s) => ({
      name: s.name,
      sealed: s.value === undefined ? (current.get(s.name) as string) : this.#box.seal(s.value),
    }));
  }
}
