// The CLI's saved settings: the server a `login` stored (endpoint, credential, CA file) and the defaults
// `configure --defaults` set. One JSON file, readable by its owner only (0600 in a 0700 directory).
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UsageError } from "./errors.ts";

export interface Profile {
  endpoint?: string;
  token?: string;
  caFile?: string;
  subscription?: string;
  defaults?: Partial<Record<DefaultKey, string>>;
}

export const DEFAULT_KEYS = ["group", "location", "subscription", "output"] as const;
export type DefaultKey = (typeof DEFAULT_KEYS)[number];

export function configDir(env: NodeJS.ProcessEnv): string {
  if (env["SESSIONPOOL_CONFIG_DIR"]) return env["SESSIONPOOL_CONFIG_DIR"];
  const base = env["XDG_CONFIG_HOME"] || join(homedir(), ".config");
  return join(base, "sessionpool");
}

export function configPath(env: NodeJS.ProcessEnv): string {
  return join(configDir(env), "config.json");
}

export interface LoadedProfile {
  profile: Profile;
  path: string;
  /** Set when the file holds a credential but others can read it. */
  looseMode?: number;
}

export function loadProfile(env: NodeJS.ProcessEnv): LoadedProfile {
  const path = configPath(env);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { profile: {}, path };
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(
      `${path} is not valid JSON (${(err as Error).message}); fix or remove it and run 'sessionpool login' again.`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${path} must hold a JSON object; fix or remove it.`);
  }
  const profile = parsed as Profile;
  const mode = statSync(path).mode & 0o777;
  return { profile, path, ...(profile.token && (mode & 0o077) !== 0 ? { looseMode: mode } : {}) };
}

/** Writes the whole profile atomically: a 0600 temp file renamed over the old one. */
export function saveProfile(env: NodeJS.ProcessEnv, profile: Profile): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = configPath(env);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(profile, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
  return path;
}

/** Parses `key=value` pairs for `configure --defaults`; an empty value clears the default. */
export function parseDefaults(pairs: string[]): Partial<Record<DefaultKey, string>> {
  const out: Partial<Record<DefaultKey, string>> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`--defaults: use 'name=value' (got '${pair}').`);
    const key = pair.slice(0, eq).trim();
    if (!(DEFAULT_KEYS as readonly string[]).includes(key)) {
      throw new UsageError(`--defaults: unknown name '${key}'; use one of ${DEFAULT_KEYS.join(", ")}.`);
    }
    out[key as DefaultKey] = pair.slice(eq + 1).trim();
  }
  return out;
}
