// Who is calling. Routes only ever see a Principal; how it was proved (admin token, pool token, later OIDC)
// is the authenticators' business.

export interface Principal {
  kind: "admin" | "pool";
  /** Shown in systemData.createdBy / lastModifiedBy. */
  name: string;
  nameType: "User" | "Application" | "ManagedIdentity" | "Key";
  /** For pool-scoped tokens: the pool key the token is valid for. */
  poolKey?: string;
}

export interface Authenticator {
  /** The principal a bearer token proves, or undefined when this authenticator does not accept it. */
  authenticate(bearerToken: string): Promise<Principal | undefined>;
}

/** Tries each authenticator in turn: adding OIDC later means adding one to the list, not touching routes. */
export class AuthenticatorChain implements Authenticator {
  readonly #chain: Authenticator[];

  constructor(chain: Authenticator[]) {
    this.#chain = chain;
  }

  async authenticate(token: string): Promise<Principal | undefined> {
    for (const a of this.#chain) {
      const principal = await a.authenticate(token);
      if (principal) return principal;
    }
    return undefined;
  }
}
