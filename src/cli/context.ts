// Everything a command needs besides its own flags, resolved once from the global flags, the environment and
// the saved profile: where the server is and the credential for it, the subscription, defaults, output, log.
import { readFileSync } from "node:fs";
import { ConnectionError, UsageError } from "./errors.ts";
import { HttpClient } from "./http-client.ts";
import { Logger } from "./logger.ts";
import { OUTPUT_FORMATS, type OutputFormat, type OutputSettings } from "./output.ts";
import { type LoadedProfile, loadProfile, type Profile } from "./profile.ts";

/** The subscription a self-hosted server's pools live in unless told otherwise. */
export const DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000";
/** az's PREVIEW_API_VERSION: what it sends to ARM and to the data plane. */
export const ARM_API_VERSION = "2025-02-02-preview";
export const DATA_PLANE_API_VERSION = "2025-02-02-preview";
/** stopSession is defined from this version on. */
export const STOP_SESSION_API_VERSION = "2025-10-02-preview";

export interface GlobalOptions {
  output?: string;
  query?: string;
  subscription?: string;
  verbose?: boolean;
  debug?: boolean;
  onlyShowErrors?: boolean;
}

export interface Terminal {
  stdinIsTTY: boolean;
  stderrIsTTY: boolean;
  /** A command may print as it goes (a streamed execution's output) when stdout is a terminal. */
  stdoutIsTTY?: boolean;
}

/** Where a command writes before its result is rendered (e.g. output as it streams). */
export interface CliWriters {
  stdout: (data: string | Buffer) => void;
  stderr: (text: string) => void;
}

export class CliContext {
  readonly env: NodeJS.ProcessEnv;
  readonly log: Logger;
  readonly output: OutputSettings;
  readonly subscription: string;
  readonly saved: LoadedProfile;
  readonly terminal: Terminal;
  readonly writers: CliWriters | undefined;
  #client: HttpClient | undefined;

  constructor(g: GlobalOptions, env: NodeJS.ProcessEnv, terminal: Terminal, writers?: CliWriters) {
    this.env = env;
    this.terminal = terminal;
    this.writers = writers;
    this.log = new Logger({
      verbose: g.verbose === true,
      debug: g.debug === true,
      onlyShowErrors: g.onlyShowErrors === true,
    });
    this.saved = loadProfile(env);
    if (this.saved.looseMode !== undefined) {
      this.log.warn(
        `${this.saved.path} holds a credential but its mode is ${this.saved.looseMode.toString(8)}; run 'chmod 600 ${this.saved.path}'.`,
      );
    }
    const defaults = this.profile.defaults ?? {};
    const configured = defaults.output;
    if (configured !== undefined && configured !== "" && !isFormat(configured)) {
      throw new UsageError(
        `the configured default output '${configured}' is not one of ${OUTPUT_FORMATS.join(", ")}; fix it with 'sessionpool configure --defaults output=json'.`,
      );
    }
    this.output = {
      format: (g.output as OutputFormat | undefined) ?? (configured || undefined) ?? "json",
      explicit: g.output !== undefined,
      ...(g.query === undefined ? {} : { query: g.query }),
    };
    this.subscription =
      g.subscription ||
      env["SESSIONPOOL_SUBSCRIPTION"] ||
      defaults.subscription ||
      this.profile.subscription ||
      DEFAULT_SUBSCRIPTION;
  }

  get profile(): Profile {
    return this.saved.profile;
  }

  /** A configured default (`configure --defaults`), or undefined. */
  default(key: "group" | "location"): string | undefined {
    const v = this.profile.defaults?.[key];
    return v === undefined || v === "" ? undefined : v;
  }

  /** The HTTP client for the configured server; fails with a ConnectionError when none is configured. */
  client(): HttpClient {
    if (this.#client) return this.#client;
    const envEndpoint = this.env["SESSIONPOOL_ENDPOINT"];
    const endpoint = normalizeEndpoint(envEndpoint || this.profile.endpoint || "");
    if (endpoint === "") {
      throw new ConnectionError(
        "no server configured: set SESSIONPOOL_ENDPOINT (and SESSIONPOOL_TOKEN) or run 'sessionpool login --endpoint URL --token-file FILE'.",
        "NotLoggedIn",
      );
    }
    // The saved credential and CA belong to the saved endpoint: never send them to another server.
    const sameServer =
      this.profile.endpoint !== undefined && normalizeEndpoint(this.profile.endpoint) === endpoint;
    const token = this.env["SESSIONPOOL_TOKEN"] || (sameServer ? this.profile.token : undefined);
    if (!token) {
      throw new ConnectionError(
        `no credential for ${endpoint}: set SESSIONPOOL_TOKEN or run 'sessionpool login --endpoint ${endpoint} --token-file FILE'.`,
        "NotLoggedIn",
      );
    }
    const caFile = this.env["SESSIONPOOL_CA_FILE"] || (sameServer ? this.profile.caFile : undefined);
    this.#client = new HttpClient({
      endpoint,
      token,
      log: this.log,
      ...(caFile ? { caFile, caPem: readCaFile(caFile) } : {}),
    });
    return this.#client;
  }

  async close(): Promise<void> {
    await this.#client?.close();
  }
}

export function normalizeEndpoint(url: string): string {
  return url.trim().replace(/\/+$/, "");
}

export function readCaFile(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read the CA file ${path}: ${(err as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new UsageError(`${path} is not a PEM certificate (no '-----BEGIN CERTIFICATE-----' line).`);
  }
  return pem;
}

function isFormat(v: string): v is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(v);
}
