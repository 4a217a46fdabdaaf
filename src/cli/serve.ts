// `sessionpool serve`: parse flags once, start the server, stop it on SIGTERM/SIGINT.

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { type ServerOptions, startServer } from "../server.ts";
import { UsageError } from "./errors.ts";

export const SERVE_HELP = `Usage: sessionpool serve [options]

Start the sessionpool server: the ARM-compatible management API and the session pools' data plane.

Options:
  --host ADDR            address to listen on (default 127.0.0.1)
  --port N               port (default 8080; 0 picks a free one)
  --data-dir DIR         where the store, keys and admin token live (default ./.sessionpool)
  --store STORE          sqlite (default: a file in the data dir), or postgres://USER@HOST:PORT/DB for a
                         PostgreSQL database that several servers share as one fleet (docs/fleet.md);
                         default $SESSIONPOOL_STORE. Every server of a fleet needs the same keys/ files
  --fleet-address URL    where the other servers of a fleet reach this one (default: the public URL)
  --public-url URL       base URL put into poolManagementEndpoint (default from host, port and scheme)
  --tls-cert FILE        PEM certificate (chain) to serve HTTPS with
  --tls-key FILE         PEM private key for --tls-cert
  --tls-self-signed      generate a private CA and a certificate into the data dir; prints the CA path
  --insecure-http        allow plain HTTP on a non-loopback address
  --max-sessions-cap N   largest maxConcurrentSessions a pool may ask for (default 600)
  --list-page-size N     pools per page of a list before nextLink (default 100)
  --trusted-proxy LIST   addresses or CIDR ranges (comma-separated, repeatable) of reverse proxies in front of
                         the server: custom containers get their X-Forwarded-For/-Proto/-Host, extended with
                         this hop. Anyone else's X-Forwarded-* and Forwarded are replaced by what the server
                         saw (the peer's address, the scheme, the Host). Default: trust nobody
  --log-level LEVEL      fatal, error, warn, info, debug, trace (default info)
  --no-runtime           serve the management API only (no Docker engine needed)
  --python-image REF     image of PythonLTS/NodeLTS/Shell sandboxes (default $SESSIONPOOL_PYTHON_IMAGE,
                         else sessionpool/python:latest, as built by scripts/build-images.sh)
  --sandbox-cpu N        cores per built-in sandbox (default 1)
  --sandbox-memory MiB   memory per built-in sandbox, MiB (default 1024)
  --sandbox-runtime NAME auto (default: gVisor when the engine has it registered, else runc with a warning),
                         runc, runsc (gVisor; the server stops at start if the engine lacks it), or the
                         engine name of another OCI runtime (e.g. kata-runtime)
  --max-sandboxes N      live sandboxes across all pools (default: host memory / 12 MiB, 2048 on 24 GiB);
                         past it new sessions get 429 ServerCapacityReached
  --max-sandbox-memory MiB  the sum of live sandboxes' memory limits (default 8 x host memory); a pool whose
                         maxConcurrentSessions could never fit is refused at PUT (PoolExceedsServerCapacity)
  -h, --help             show this help

Environment:
  SESSIONPOOL_ADMIN_TOKEN  the admin credential; otherwise one is generated into <data-dir>/admin-token (0600)
  SESSIONPOOL_STORE        the store, as --store
  DOCKER_HOST              the Docker engine to use (default unix:///var/run/docker.sock)
`;

export async function serve(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8080" },
      "data-dir": { type: "string", default: "./.sessionpool" },
      store: { type: "string" },
      "fleet-address": { type: "string" },
      "public-url": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "tls-self-signed": { type: "boolean", default: false },
      "insecure-http": { type: "boolean", default: false },
      "max-sessions-cap": { type: "string" },
      "list-page-size": { type: "string" },
      "trusted-proxy": { type: "string", multiple: true },
      "log-level": { type: "string", default: "info" },
      "no-runtime": { type: "boolean", default: false },
      "python-image": { type: "string" },
      "sandbox-cpu": { type: "string" },
      "sandbox-memory": { type: "string" },
      "sandbox-runtime": { type: "string" },
      "max-sandboxes": { type: "string" },
      "max-sandbox-memory": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  const port = intFlag("--port", values.port, 0, 65535);
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together.");
  }
  if (values["tls-self-signed"] && values["tls-cert"]) {
    throw new UsageError("choose either --tls-self-signed or --tls-cert/--tls-key.");
  }
  const dataDir = resolve(values["data-dir"]);
  const store = values.store ?? env["SESSIONPOOL_STORE"];
  if (values["fleet-address"] !== undefined && !/^https?:\/\//.test(values["fleet-address"])) {
    throw new UsageError("--fleet-address must be an http:// or https:// URL.");
  }
  const options: ServerOptions = {
    host: values.host,
    port,
    dataDir,
    ...(store ? { store } : {}),
    ...(values["fleet-address"] ? { fleetAddress: values["fleet-address"] } : {}),
    logLevel: values["log-level"],
    insecureHttp: values["insecure-http"],
    ...(values["public-url"] ? { publicUrl: values["public-url"] } : {}),
    ...(env["SESSIONPOOL_ADMIN_TOKEN"] ? { adminToken: env["SESSIONPOOL_ADMIN_TOKEN"] } : {}),
    ...(values["tls-self-signed"]
      ? { tls: "self-signed" as const }
      : values["tls-cert"] && values["tls-key"]
        ? { tls: { certPath: values["tls-cert"], keyPath: values["tls-key"] } }
        : {}),
    ...(values["max-sessions-cap"]
      ? { maxSessionsCap: intFlag("--max-sessions-cap", values["max-sessions-cap"], 1, 100000) }
      : {}),
    ...(values["list-page-size"]
      ? { listPageSize: intFlag("--list-page-size", values["list-page-size"], 1, 1000) }
      : {}),
    ...(values["trusted-proxy"]
      ? { trustedProxies: values["trusted-proxy"].flatMap((list) => list.split(",")) }
      : {}),
  };
  if (!values["no-runtime"]) {
    const { dockerBackend } = await import("../backend-wiring.ts");
    const pythonImage = values["python-image"] ?? env["SESSIONPOOL_PYTHON_IMAGE"];
    const cpu = values["sandbox-cpu"] === undefined ? undefined : Number(values["sandbox-cpu"]);
    if (cpu !== undefined && !(cpu >= 0.1 && cpu <= 64))
      throw new UsageError("--sandbox-cpu must be a number from 0.1 to 64.");
    const memoryMiB =
      values["sandbox-memory"] === undefined
        ? undefined
        : intFlag("--sandbox-memory", values["sandbox-memory"], 64, 1024 * 1024);
    const capacity = {
      ...(values["max-sandboxes"] === undefined
        ? {}
        : { maxSandboxes: intFlag("--max-sandboxes", values["max-sandboxes"], 1, 1_000_000) }),
      ...(values["max-sandbox-memory"] === undefined
        ? {}
        : {
            maxSandboxMemoryBytes:
              intFlag("--max-sandbox-memory", values["max-sandbox-memory"], 64, 1024 * 1024 * 1024) *
              1024 *
              1024,
          }),
    };
    options.backend = dockerBackend({
      ...(env["DOCKER_HOST"] ? { dockerHost: env["DOCKER_HOST"] } : {}),
      capacity,
      sandbox: {
        ...(pythonImage ? { pythonImage } : {}),
        ...(cpu === undefined ? {} : { cpu }),
        ...(memoryMiB === undefined ? {} : { memoryBytes: memoryMiB * 1024 * 1024 }),
        ...(values["sandbox-runtime"] ? { runtime: values["sandbox-runtime"] } : {}),
      },
    });
  }
  const server = await startServer(options);
  if (server.caPath) process.stdout.write(`TLS CA certificate: ${server.caPath}\n`);
  if (server.adminTokenPath) process.stdout.write(`Admin token file: ${server.adminTokenPath}\n`);
  if (server.sandboxRuntime !== undefined) {
    process.stdout.write(
      server.sandboxRuntime === "runsc"
        ? "Sandboxes run under gVisor (runsc)\n"
        : `Sandboxes run under ${server.sandboxRuntime}${server.sandboxRuntime === "runc" ? " (shared host kernel)" : ""}\n`,
    );
  }
  process.stdout.write(`sessionpool listening on ${server.url}\n`);
  process.stdout.write(`Web console: ${server.url}/ (sign in with the admin token)\n`);

  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        process.stderr.write(`received ${signal} again; exiting now\n`);
        process.exit(1);
      }
      stopping = true;
      process.stderr.write(`received ${signal}; shutting down\n`);
      void server.close().finally(resolveStop);
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}

function intFlag(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`${name} must be a whole number from ${min} to ${max} (got '${text}').`);
  return n;
}
