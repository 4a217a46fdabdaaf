// Flag values turned into ARM pieces the way az turns them: `--secrets a=b`, `--env-vars A=secretref:s`, a
// registry password kept as a pool secret, names of environments and identities made into resource ids.
import { UsageError } from "../errors.ts";

export interface Secret {
  name: string;
  value?: string;
}

/** Where a bare name is resolved: the pool's subscription and resource group. */
export interface Scope {
  subscription: string;
  resourceGroup: string;
}

/**
 * az's "empty string to clear": `--secrets ""`, `--env-vars ""`, `--command ""` or `--args ""` alone asks for an
 * empty list. An empty string among other values is not a clear: an argument may be empty, a pair may not.
 */
export function clearsList(values: string[]): boolean {
  return values.length === 1 && values[0] === "";
}

/** `--command a b` / `--args a b`, or none for a lone empty string. */
export function parseList(values: string[]): string[] {
  return clearsList(values) ? [] : values;
}

/** `--secrets a=b c=d`; `--secrets ""` is none. */
export function parseSecrets(pairs: string[]): Secret[] {
  if (clearsList(pairs)) return [];
  const out: Secret[] = [];
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0)
      throw new UsageError(`--secrets: must be in format "<key>=<value> <key>=<value> ..." (got '${pair}').`);
    const name = pair.slice(0, eq);
    if (out.some((s) => s.name === name)) {
      throw new UsageError(`--secrets: duplicate secret ${name} found, secret names must be unique.`);
    }
    out.push({ name, value: pair.slice(eq + 1) });
  }
  return out;
}

/** `--env-vars A=1 B=secretref:mysecret`; `--env-vars ""` is none. */
export function parseEnvVars(pairs: string[]): { name: string; value?: string; secretRef?: string }[] {
  if (clearsList(pairs)) return [];
  const out: { name: string; value?: string; secretRef?: string }[] = [];
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new UsageError(
        `--env-vars: environment variables must be in the format "<key>=<value> <key>=secretref:<value> ..." (got '${pair}').`,
      );
    }
    const name = pair.slice(0, eq);
    if (out.some((e) => e.name === name)) {
      throw new UsageError(
        `--env-vars: duplicate environment variable ${name} found, environment variable names must be unique.`,
      );
    }
    const value = pair.slice(eq + 1);
    out.push(value.startsWith("secretref:") ? { name, secretRef: value.slice(10) } : { name, value });
  }
  return out;
}

/**
 * az's store_as_secret_and_return_secret_ref: `secretref:NAME` names an existing secret; a plain password is
 * stored as the secret `<server without dots>-<username>` and referenced by that name.
 */
export function registrySecretRef(
  secrets: Secret[],
  username: string,
  server: string,
  password: string,
  warn: (m: string) => void,
  replaceValue = false,
): string {
  if (password.startsWith("secretref:")) {
    const name = password.slice(10);
    if (name === "") {
      throw new UsageError("--registry-password: a value starting with 'secretref:' must name a secret.");
    }
    if (!secrets.some((s) => s.name.toLowerCase() === name.toLowerCase())) {
      throw new UsageError(
        `registry password secret with name '${name}' does not exist. Add the secret using --secrets.`,
      );
    }
    return name;
  }
  const name = registrySecretName(server, username);
  const existing = secrets.find((s) => s.name.toLowerCase() === name);
  if (existing) {
    if (existing.value !== undefined && existing.value !== password && !replaceValue) {
      throw new UsageError(
        `found secret with name "${name}" but value does not equal the supplied registry password.`,
      );
    }
    existing.value = password;
    return existing.name;
  }
  warn(`Adding registry password as a secret with name "${name}"`);
  secrets.push({ name, value: password });
  return name;
}

export function registrySecretName(server: string, username: string): string {
  const s = server.replace(/:/g, "-");
  let host: string;
  try {
    host = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? new URL(s).hostname : s;
  } catch {
    host = s;
  }
  const user = username.toLowerCase().replace(/[^a-z0-9-]/g, "-");
  return `${host.replace(/\./g, "")}-${user}`.toLowerCase();
}

export function environmentId(env: string, ctx: Scope): string {
  if (env.includes("/")) return env;
  return `/subscriptions/${ctx.subscription}/resourceGroups/${ctx.resourceGroup}/providers/Microsoft.App/managedEnvironments/${env}`;
}

/** A user-assigned identity given by name becomes its resource id in the pool's resource group (az does this). */
export function identityResourceId(id: string, ctx: Scope): string {
  if (id.startsWith("/")) return id;
  return `/subscriptions/${ctx.subscription}/resourceGroups/${ctx.resourceGroup}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${id}`;
}

export function isSystem(identity: string): boolean {
  return identity.toLowerCase() === "system";
}
