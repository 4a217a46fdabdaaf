// The web console (console/, docs/console.md): serves the prebuilt files of console/dist at `/` and under
// /console/assets/. Only the files found there at start-up are served (no path from a URL ever reaches the file
// system), with a content security policy that lets the page load and reach nothing but this server.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import { RouteNotFoundError } from "./errors.ts";

/** Where `npm run build:console` (and scripts/setup.sh) writes the console. */
export const DEFAULT_CONSOLE_DIR = resolve(import.meta.dirname, "../../console/dist");

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json",
};

const MISSING =
  "The web console is not built. Run scripts/setup.sh (or npm run build:console), then reload.\n";

interface Asset {
  body: Buffer;
  type: string;
}

export interface ConsoleOptions {
  /** The built console (index.html and assets/); default console/dist of this checkout. */
  dir?: string;
}

export async function consoleRoutes(app: FastifyInstance, o: ConsoleOptions = {}): Promise<void> {
  const dir = o.dir ?? DEFAULT_CONSOLE_DIR;
  const index = readIfFile(join(dir, "index.html"));
  const assets = loadAssets(join(dir, "assets"));

  const secure = (reply: FastifyReply) =>
    reply
      .header("content-security-policy", CONSOLE_CSP)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .header("x-frame-options", "DENY");

  app.get("/", async (_request, reply) => {
    secure(reply).header("cache-control", "no-cache");
    if (index === undefined) return reply.type("text/plain; charset=utf-8").send(MISSING);
    return reply.type("text/html; charset=utf-8").send(index);
  });
  app.get("/console/assets/:name", async (request, reply) => {
    const { name } = request.params as { name: string };
    // Own property only: "constructor" or "__proto__" must not find anything.
    const asset = Object.hasOwn(assets, name) ? assets[name] : undefined;
    if (asset === undefined) throw new RouteNotFoundError(request.method, request.url);
    // Names carry a hash of their content (console/build.ts): a new build is a new name.
    return secure(reply)
      .header("cache-control", "public, max-age=31536000, immutable")
      .type(asset.type)
      .send(asset.body);
  });
}

function readIfFile(path: string): Buffer | undefined {
  try {
    return statSync(path).isFile() ? readFileSync(path) : undefined;
  } catch {
    return undefined;
  }
}

/** The files directly in `dir` with a known type, read once: the whole set the console serves. */
function loadAssets(dir: string): Record<string, Asset> {
  const assets: Record<string, Asset> = Object.create(null);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return assets;
  }
  for (const name of names) {
    const type = CONTENT_TYPES[extname(name)];
    const body = type === undefined ? undefined : readIfFile(join(dir, name));
    if (type !== undefined && body !== undefined) assets[name] = { body, type };
  }
  return assets;
}
