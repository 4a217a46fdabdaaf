// The test web app image for CustomContainer tests: test/helpers/webapp/server.py (stdlib-only Python) on a
// minimal root file system cut from the local PythonLTS image (python3, the libraries it links, the standard
// library), so nothing is pulled from outside and pushes to the test registry stay small (~40 MB instead of
// ~600). Built once per content (tagged by a hash of the recipe, server.py and the base image id) with the
// classic builder, --pull=false and no network; pushed with credentials through the Engine API (no
// `docker login`, so the host's docker config is never touched and there is nothing to log out of).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";
import { dockerOptionsFromEnv } from "./busybox-image.ts";

const run = promisify(execFile);

/** Where the python3 of the test image comes from (built by scripts/build-images.sh). */
export const WEBAPP_BASE_IMAGE = "sessionpool/python:latest";
export const WEBAPP_REPO = "sessionpool-test/webapp";
export const WEBAPP_SOURCE = join(import.meta.dirname, "webapp", "server.py");
/** The uid:gid the image runs as (its USER). */
export const WEBAPP_USER = "1000:1000";
export const WEBAPP_PORT = 8080;

/**
 * Run in a throwaway container of the base image (root, no network): copies python3, the libraries it links and
 * the standard library (less what the app never imports) to /out/rootfs.
 */
const EXTRACT = [
  "set -eu",
  'py=$(readlink -f /usr/bin/python3); lib=$(basename "$py"); root=/out/rootfs',
  `for f in "$py" $(ldd "$py" | grep -o '/[^ ]*'); do mkdir -p "$root$(dirname "$f")"; cp -L "$f" "$root$f"; done`,
  'ln -s "$py" "$root/usr/bin/python3"',
  'mkdir -p "$root/usr/lib" "$root/tmp" "$root/opt/webapp"; chmod 1777 "$root/tmp"',
  "tar -C /usr/lib -c --exclude=test --exclude=idlelib --exclude=tkinter --exclude=turtledemo --exclude=ensurepip " +
    `--exclude=lib2to3 --exclude=pydoc_data --exclude='config-*' "$lib" | tar -C "$root/usr/lib" -x`,
].join("\n");

const DOCKERFILE = `# sessionpool test web app
FROM scratch
COPY rootfs/ /
COPY server.py /opt/webapp/server.py
USER ${WEBAPP_USER}
WORKDIR /opt/webapp
ENV PORT=${WEBAPP_PORT} HOME=/tmp
EXPOSE ${WEBAPP_PORT}
LABEL io.sessionpool.test=webapp
ENTRYPOINT ["python3", "-u", "/opt/webapp/server.py"]
`;

let built: Promise<string> | undefined;

/** Builds the web app image if its content-hash tag is missing; returns that local tag. */
export function ensureWebappImage(docker: Docker = new Docker(dockerOptionsFromEnv())): Promise<string> {
  built ??= build(docker).catch((err: unknown) => {
    built = undefined;
    throw err;
  });
  return built;
}

async function build(docker: Docker): Promise<string> {
  let baseId: string;
  try {
    baseId = (await docker.getImage(WEBAPP_BASE_IMAGE).inspect()).Id;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    throw new Error(`${WEBAPP_BASE_IMAGE} is missing: build it with 'bash scripts/build-images.sh'`);
  }
  const source = await readFile(WEBAPP_SOURCE);
  const hash = createHash("sha256")
    .update(`${EXTRACT}\0${DOCKERFILE}\0${baseId}\0`)
    .update(source)
    .digest("hex")
    .slice(0, 12);
  const tag = `${WEBAPP_REPO}:${hash}`;
  try {
    await docker.getImage(tag).inspect();
    return tag;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
  const context = await mkdtemp(join(tmpdir(), "sessionpool-webapp-"));
  const failed = (what: string) => (err: { stderr?: string; message: string }) => {
    throw new Error(`${what} for ${tag} failed: ${err.stderr || err.message}`);
  };
  try {
    // The base's files come out through a bind mount: no intermediate image of the base is left behind.
    await run(
      "docker",
      [
        "run",
        "--rm",
        "--network=none",
        "--user=0:0",
        "--entrypoint=sh",
        `--volume=${context}:/out`,
        "--label=io.sessionpool.test=webapp-extract",
        baseId,
        "-c",
        EXTRACT,
      ],
      { timeout: 300_000 },
    ).catch(failed("extracting python3 from the base image"));
    await writeFile(join(context, "Dockerfile"), DOCKERFILE);
    await writeFile(join(context, "server.py"), source);
    await run(
      "docker",
      ["build", "--pull=false", "--network=none", "--force-rm", "--quiet", "-t", tag, context],
      {
        env: { ...process.env, DOCKER_BUILDKIT: "0" },
        timeout: 300_000,
        maxBuffer: 16 * 1024 * 1024,
      },
    ).catch(failed("docker build"));
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  await pruneOldTags(docker, tag);
  return tag;
}

/** Drops the tags of earlier builds (other content hashes) so they do not pile up; images in use stay. */
async function pruneOldTags(docker: Docker, current: string): Promise<void> {
  const images = await docker.listImages({ filters: { reference: [`${WEBAPP_REPO}:*`] } } as object);
  for (const image of images) {
    for (const ref of image.RepoTags ?? []) {
      if (ref === current || !/:[0-9a-f]{12}$/.test(ref)) continue;
      await docker
        .getImage(ref)
        .remove()
        .catch(() => {});
    }
  }
}

export interface PushedImage {
  /** "127.0.0.1:PORT/sessionpool-test/webapp:1". */
  ref: string;
  /** Removes the registry reference from the local engine (the content-hash tag stays for the next run). */
  untag(): Promise<void>;
}

/** Tags the local web app image for the registry and pushes it with the registry's credentials. */
export async function pushWebappImage(
  registry: { host: string; username: string; password: string },
  options: { repository?: string; tag?: string; docker?: Docker } = {},
): Promise<PushedImage> {
  const docker = options.docker ?? new Docker(dockerOptionsFromEnv());
  const local = await ensureWebappImage(docker);
  const repo = `${registry.host}/${options.repository ?? WEBAPP_REPO}`;
  const tag = options.tag ?? "1";
  const ref = `${repo}:${tag}`;
  await docker.getImage(local).tag({ repo, tag });
  const untag = async () => {
    await docker
      .getImage(ref)
      .remove({ noprune: true })
      .catch(() => {});
  };
  try {
    const stream = await docker.getImage(ref).push({
      authconfig: { username: registry.username, password: registry.password, serveraddress: registry.host },
    } as object);
    const lines: Array<{ error?: string; errorDetail?: { message?: string } }> = await new Promise(
      (resolve, reject) =>
        docker.modem.followProgress(stream, (err: Error | null, output: typeof lines) =>
          err ? reject(err) : resolve(output),
        ),
    );
    const failed = lines.find((l) => l.error !== undefined || l.errorDetail !== undefined);
    if (failed) throw new Error(`pushing ${ref} failed: ${failed.errorDetail?.message ?? failed.error}`);
  } catch (err) {
    await untag();
    throw err;
  }
  return { ref, untag };
}

/** The network a container is on and that network's bridge gateway (the host's own address on the bridge). */
export async function networkGateway(containerId: string): Promise<{ network: string; gateway: string }> {
  const { stdout } = await run(
    "docker",
    ["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", containerId],
    { timeout: 30_000 },
  );
  const network = stdout.trim();
  const inspect = await run(
    "docker",
    ["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", network],
    { timeout: 30_000 },
  );
  return { network, gateway: inspect.stdout.trim() };
}
