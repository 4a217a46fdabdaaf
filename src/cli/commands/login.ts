// `sessionpool login|logout|configure`: save where the server is and the credential for it (checked against the
// server first), clear the credential, and set az-style defaults (group, location, subscription, output).
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { type CliContext, normalizeEndpoint, readCaFile } from "../context.ts";
import { ApiError, UsageError } from "../errors.ts";
import { HttpClient } from "../http-client.ts";
import { type CommandResult, OUTPUT_FORMATS } from "../output.ts";
import { poolsPath } from "../pool-ref.ts";
import { DEFAULT_KEYS, parseDefaults, saveProfile } from "../profile.ts";

export interface LoginFlags {
  endpoint?: string;
  token?: string;
  tokenFile?: string;
  caFile?: string;
  subscription?: string;
}

export async function login(ctx: CliContext, f: LoginFlags): Promise<CommandResult> {
  const endpoint = normalizeEndpoint(f.endpoint ?? "");
  if (endpoint === "") throw new UsageError("the following arguments are required: --endpoint.");
  let parsed: URL;
  try {
    parsed = new URL(endpoint);
  } catch {
    throw new UsageError(
      `--endpoint '${endpoint}' is not a URL; use e.g. https://sessions.example.com:8443.`,
    );
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(`--endpoint must be an http:// or https:// URL (got '${endpoint}').`);
  }
  if (f.token !== undefined && f.tokenFile !== undefined) {
    throw new UsageError("use either --token or --token-file, not both.");
  }
  const token = (await readToken(ctx, f)).trim();
  if (token === "") throw new UsageError("the token is empty.");
  const caFile = f.caFile === undefined ? undefined : resolve(f.caFile);
  const caPem = caFile === undefined ? undefined : readCaFile(caFile);

  // Check the credential before keeping it: a typo should fail here, not on the next command.
  const client = new HttpClient({
    endpoint,
    token,
    log: ctx.log,
    ...(caFile ? { caFile, caPem: caPem! } : {}),
  });
  try {
    await client.request("GET", poolsPath(ctx.subscription));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 403)) throw err;
    ctx.log.warn(
      "the server accepted this credential for a pool's data plane only: 'session' commands can use it with --pool-endpoint, pool management cannot.",
    );
  } finally {
    await client.close();
  }

  const profile = { ...ctx.profile };
  profile.endpoint = endpoint;
  profile.token = token;
  if (caFile) profile.caFile = caFile;
  else delete profile.caFile;
  if (f.subscription) profile.subscription = f.subscription;
  const path = saveProfile(ctx.env, profile);
  ctx.log.note(`Logged in to ${endpoint}; profile saved in ${path}`);
  return {
    value: {
      endpoint,
      subscription: ctx.subscription,
      ...(caFile ? { caFile } : {}),
      configFile: path,
    },
  };
}

async function readToken(ctx: CliContext, f: LoginFlags): Promise<string> {
  if (f.token !== undefined) return f.token;
  if (f.tokenFile === "-") return readFileSync(0, "utf8");
  if (f.tokenFile !== undefined) {
    try {
      return readFileSync(f.tokenFile, "utf8");
    } catch (err) {
      throw new UsageError(`--token-file: cannot read ${f.tokenFile}: ${(err as Error).message}`);
    }
  }
  if (ctx.env["SESSIONPOOL_TOKEN"]) return ctx.env["SESSIONPOOL_TOKEN"];
  if (!ctx.terminal.stdinIsTTY) {
    throw new UsageError(
      "give the credential with --token-file FILE (or --token-file - to read it from standard input) or --token.",
    );
  }
  return promptHidden("Token: ");
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolvePrompt, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding("utf8");
    let text = "";
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      process.stderr.write("\n");
      if (err) reject(err);
      else resolvePrompt(text);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n") return done();
        if (ch === "\u0003") return done(new UsageError("login cancelled."));
        if (ch === "\u007f" || ch === "\b") text = text.slice(0, -1);
        else text += ch;
      }
    };
    stdin.on("data", onData);
  });
}

export async function logout(ctx: CliContext): Promise<CommandResult> {
  if (!ctx.profile.token) {
    ctx.log.note("Not logged in.");
    return { value: undefined };
  }
  const profile = { ...ctx.profile };
  delete profile.token;
  const path = saveProfile(ctx.env, profile);
  ctx.log.note(`Logged out of ${profile.endpoint ?? "the server"}; the credential was removed from ${path}`);
  return { value: undefined };
}

export async function configure(
  ctx: CliContext,
  f: { defaults?: string[]; listDefaults?: boolean },
): Promise<CommandResult> {
  if (f.defaults === undefined && !f.listDefaults) {
    throw new UsageError(
      `say what to configure: --defaults ${DEFAULT_KEYS.map((k) => `${k}=VALUE`).join(" ")}, or --list-defaults.`,
    );
  }
  if (f.defaults !== undefined) {
    const changes = parseDefaults(f.defaults);
    const profile = { ...ctx.profile, defaults: { ...ctx.profile.defaults } };
    for (const [k, v] of Object.entries(changes)) {
      if (v === "") delete profile.defaults[k as keyof typeof changes];
      else profile.defaults[k as keyof typeof changes] = v;
    }
    if (profile.defaults.output !== undefined) {
      if (!(OUTPUT_FORMATS as readonly string[]).includes(profile.defaults.output)) {
        throw new UsageError(`--defaults output must be one of ${OUTPUT_FORMATS.join(", ")}.`);
      }
    }
    saveProfile(ctx.env, profile);
    if (!f.listDefaults) return { value: undefined };
    return { value: listDefaults(profile.defaults, ctx.saved.path) };
  }
  return { value: listDefaults(ctx.profile.defaults ?? {}, ctx.saved.path) };
}

function listDefaults(defaults: Record<string, string | undefined>, path: string) {
  return Object.entries(defaults)
    .filter(([, v]) => v !== undefined && v !== "")
    .map(([name, value]) => ({ name, source: path, value }));
}
