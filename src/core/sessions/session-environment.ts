// Sessions personalised at claim time: `PUT {endpoint}/session?identifier=ID` with environment variables, each a
// literal value or a reference to one of the pool's secrets. Checked here, applied by the session's agent before
// the session is handed out, kept in the store sealed with the server's key (a restart re-applies them), and never
// echoed: what leaves this module towards clients is names only.
import { createHash } from "node:crypto";
import { ValidationError } from "../errors.ts";

export const ENVIRONMENT_LIMITS = {
  /** Variables per session. */
  maxVariables: 64,
  /** Characters in a name. */
  maxNameLength: 128,
  /** UTF-8 bytes in one value (a secret's value included). */
  maxValueBytes: 32 * 1024,
  /** UTF-8 bytes of all names and values together. */
  maxTotalBytes: 128 * 1024,
} as const;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Names the sandbox's own programs depend on: a session could not be trusted to run with them changed. */
const RESERVED_NAMES = new Set([
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "SHELL",
  "PWD",
  "OLDPWD",
  "HOSTNAME",
  "TMPDIR",
  "TERM",
  "LANG",
  "LANGUAGE",
  "IFS",
  "ENV",
  "BASH_ENV",
  "MPLBACKEND",
]);
const RESERVED_PREFIXES = ["LC_", "LD_", "PYTHON", "NODE_", "NPM_CONFIG_", "BASH_FUNC_", "SESSIONPOOL_"];

/** One requested variable: its literal value, or the name of a pool secret that holds it. */
export type EnvironmentEntry = { name: string; value: string } | { name: string; secretRef: string };

/** What a session was personalised with, as the server keeps it in memory: no values. */
export interface AppliedEnvironment {
  /** Equal for the same variables, whatever their order (200 vs 409 on a repeated PUT). */
  digest: string;
  names: string[];
}

export const NO_ENVIRONMENT: AppliedEnvironment = { digest: digestOf([]), names: [] };

export interface RequestedEnvironment {
  entries: EnvironmentEntry[];
  applied: AppliedEnvironment;
}

/** The body of `PUT /session`: absent or `{}` asks for no variables. Throws 400s naming the rule broken. */
export function parseEnvironmentRequest(
  body: unknown,
  secretNames: ReadonlySet<string>,
): RequestedEnvironment {
  if (body === undefined || body === null || body === "") return { entries: [], applied: NO_ENVIRONMENT };
  if (typeof body !== "object" || Array.isArray(body))
    throw new ValidationError("InvalidRequestContent", "The request body must be a JSON object.");
  const list = (body as Record<string, unknown>).environmentVariables;
  if (list === undefined || list === null) return { entries: [], applied: NO_ENVIRONMENT };
  if (!Array.isArray(list))
    throw invalid("'environmentVariables' must be an array of {name, value} or {name, secretRef}.");
  if (list.length > ENVIRONMENT_LIMITS.maxVariables)
    throw invalid(
      `A session takes at most ${ENVIRONMENT_LIMITS.maxVariables} environment variables; ${list.length} were given.`,
    );
  const entries: EnvironmentEntry[] = [];
  const seen = new Set<string>();
  let total = 0;
  list.forEach((item, i) => {
    const at = `environmentVariables[${i}]`;
    if (typeof item !== "object" || item === null || Array.isArray(item))
      throw invalid(`${at} must be an object with 'name' and one of 'value' or 'secretRef'.`, at);
    const { name, value, secretRef, ...rest } = item as Record<string, unknown>;
    const extra = Object.keys(rest)[0];
    if (extra !== undefined) throw invalid(`${at} has an unknown property '${extra}'.`, `${at}.${extra}`);
    if (typeof name !== "string" || !NAME.test(name) || name.length > ENVIRONMENT_LIMITS.maxNameLength)
      throw invalid(
        `${at}.name must be 1-${ENVIRONMENT_LIMITS.maxNameLength} characters of letters, digits and '_', not starting with a digit.`,
        `${at}.name`,
      );
    if (isReserved(name))
      throw invalid(
        `'${name}' is reserved: the sandbox's own programs depend on it (PATH, HOME, USER, SHELL, LANG, TMPDIR and the like, and names starting with ${RESERVED_PREFIXES.join(", ")}).`,
        `${at}.name`,
      );
    if (seen.has(name)) throw invalid(`'${name}' is given more than once.`, `${at}.name`);
    seen.add(name);
    if ((value === undefined) === (secretRef === undefined))
      throw invalid(`${at} needs exactly one of 'value' and 'secretRef'.`, at);
    total += Buffer.byteLength(name);
    if (value !== undefined) {
      if (typeof value !== "string" || value.includes("\0"))
        throw invalid(`${at}.value must be a string without NUL characters.`, `${at}.value`);
      const bytes = Buffer.byteLength(value);
      if (bytes > ENVIRONMENT_LIMITS.maxValueBytes)
        throw invalid(
          `${at}.value is ${bytes} bytes; a value may have at most ${ENVIRONMENT_LIMITS.maxValueBytes}.`,
          `${at}.value`,
        );
      total += bytes;
      entries.push({ name, value });
    } else {
      if (typeof secretRef !== "string" || !secretNames.has(secretRef))
        throw new ValidationError(
          "SecretRefNotFound",
          `${at}.secretRef names no secret of this session pool.`,
          `${at}.secretRef`,
        );
      entries.push({ name, secretRef });
    }
  });
  if (total > ENVIRONMENT_LIMITS.maxTotalBytes)
    throw invalid(
      `The environment variables take ${total} bytes; a session takes at most ${ENVIRONMENT_LIMITS.maxTotalBytes} (names and values).`,
    );
  return { entries, applied: appliedOf(entries) };
}

export function appliedOf(entries: readonly EnvironmentEntry[]): AppliedEnvironment {
  return { digest: digestOf(entries), names: entries.map((e) => e.name).sort() };
}

/**
 * The values to set: literal ones as given, secret ones read from the pool's secrets now. A secret removed from the
 * pool since the claim (only possible for a re-application after a restart) is left out rather than set empty.
 */
export function resolveEnvironment(
  entries: readonly EnvironmentEntry[],
  secrets: ReadonlyMap<string, string>,
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const e of entries) {
    const value = "value" in e ? e.value : secrets.get(e.secretRef);
    if (value !== undefined) values[e.name] = value;
  }
  return values;
}

/** A secret's value counts against the size limits too, once it is known. */
export function checkResolvedSize(values: Record<string, string>): void {
  let total = 0;
  for (const [name, value] of Object.entries(values)) {
    const bytes = Buffer.byteLength(value);
    if (bytes > ENVIRONMENT_LIMITS.maxValueBytes)
      throw invalid(
        `The value of '${name}' is ${bytes} bytes; a value may have at most ${ENVIRONMENT_LIMITS.maxValueBytes}.`,
      );
    total += Buffer.byteLength(name) + bytes;
  }
  if (total > ENVIRONMENT_LIMITS.maxTotalBytes)
    throw invalid(
      `The environment variables take ${total} bytes; a session takes at most ${ENVIRONMENT_LIMITS.maxTotalBytes} (names and values).`,
    );
}

/** The stored form: entries as JSON, for the server's secret box to seal. */
export function serializeEnvironment(entries: readonly EnvironmentEntry[]): string {
  return JSON.stringify(entries);
}

export function deserializeEnvironment(json: string): EnvironmentEntry[] {
  const parsed = JSON.parse(json) as unknown;
  if (!Array.isArray(parsed)) throw new Error("a stored session environment is not a list");
  return parsed.flatMap((e: Record<string, unknown>): EnvironmentEntry[] => {
    if (typeof e?.name !== "string") return [];
    if (typeof e.value === "string") return [{ name: e.name, value: e.value }];
    if (typeof e.secretRef === "string") return [{ name: e.name, secretRef: e.secretRef }];
    return [];
  });
}

function isReserved(name: string): boolean {
  const upper = name.toUpperCase();
  return RESERVED_NAMES.has(upper) || RESERVED_PREFIXES.some((p) => upper.startsWith(p));
}

function digestOf(entries: readonly EnvironmentEntry[]): string {
  const canonical = [...entries]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => ("value" in e ? [e.name, "value", e.value] : [e.name, "secretRef", e.secretRef]));
  return createHash("sha256").update(JSON.stringify(canonical)).digest("base64url");
}

function invalid(message: string, target = "environmentVariables"): ValidationError {
  return new ValidationError("InvalidEnvironmentVariable", message, target);
}
