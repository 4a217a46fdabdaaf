// Builds a tiny local test image from the host's static busybox, so integration tests never pull from a registry.
import { spawn } from "node:child_process";
import { access, chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import Docker from "dockerode";

export const BUSYBOX_IMAGE = "sessionpool-test/busybox:1";
/** Where the static busybox binary comes from (Debian: `apt-get install busybox-static`). */
export const BUSYBOX_BINARY = "/bin/busybox";

/** Dockerode connection options for the engine the tests use: DOCKER_HOST when set, else the default socket. */
export function dockerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Docker.DockerOptions {
  const host = env["DOCKER_HOST"];
  if (!host) return { socketPath: "/var/run/docker.sock" };
  if (host.startsWith("unix://")) return { socketPath: host.slice("unix://".length) };
  const url = new URL(host.includes("://") ? host : `tcp://${host}`);
  return { host: url.hostname, port: url.port || "2375", protocol: "http" };
}

/** The DOCKER_HOST string to hand to DockerDriver (which never reads the environment itself). */
export function dockerHostFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env["DOCKER_HOST"] || "unix:///var/run/docker.sock";
}

let pending: Promise<string> | undefined;

/** Makes sure BUSYBOX_IMAGE exists locally (building it on first use) and returns its reference. */
export function ensureBusyboxImage(docker: Docker = new Docker(dockerOptionsFromEnv())): Promise<string> {
  pending ??= build(docker).catch((err: unknown) => {
    pending = undefined;
    throw err;
  });
  return pending;
}

async function build(docker: Docker): Promise<string> {
  try {
    await docker.getImage(BUSYBOX_IMAGE).inspect();
    return BUSYBOX_IMAGE;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
  try {
    await access(BUSYBOX_BINARY);
  } catch {
    throw new Error(
      `${BUSYBOX_BINARY} is missing: install a static busybox (apt-get install -y busybox-static)`,
    );
  }

  const root = await mkdtemp(join(tmpdir(), "sessionpool-busybox-"));
  try {
    await buildRootfs(root);
    const tar = spawn("tar", ["-C", root, "--numeric-owner", "--owner=0", "--group=0", "-c", "."], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const tarDone = new Promise<void>((resolve, reject) => {
      tar.on("error", reject);
      tar.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`tar exited with ${code}`))));
    });
    const [repo, tag] = BUSYBOX_IMAGE.split(":") as [string, string];
    const stream = await docker.importImage(tar.stdout, {
      repo,
      tag,
      changes: ['CMD ["/bin/sh"]'],
    } as object);
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (err: Error | null, output: Array<{ error?: string }>) => {
        const failed = output.find((line) => line.error);
        if (err) reject(err);
        else if (failed) reject(new Error(`docker import failed: ${failed.error}`));
        else resolve();
      });
    });
    await tarDone;
    return BUSYBOX_IMAGE;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function buildRootfs(root: string): Promise<void> {
  for (const dir of ["bin", "etc", "tmp", "mnt/data", "run", "proc", "sys", "dev", "root", "home/user"]) {
    await mkdir(join(root, dir), { recursive: true });
  }
  await chmod(join(root, "tmp"), 0o1777);
  await writeFile(join(root, "bin", "busybox"), await readFile(BUSYBOX_BINARY), { mode: 0o755 });
  const applets = await listApplets();
  for (const applet of applets) {
    if (applet === "busybox") continue;
    await symlink("busybox", join(root, "bin", applet));
  }
  await writeFile(
    join(root, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
  );
  await writeFile(join(root, "etc", "group"), "root:x:0:\nuser:x:1000:\n");
}

function listApplets(): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(BUSYBOX_BINARY, ["--list"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`busybox --list exited with ${code}`));
      else resolve(out.split("\n").filter((name) => name !== "" && !name.includes("/")));
    });
  });
}

/** `docker exec` through dockerode, output demultiplexed and trimmed (tests only: the server never execs). */
export async function dockerExec(
  docker: Docker,
  id: string,
  argv: string[],
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const execution = await docker.getContainer(id).exec({ Cmd: argv, AttachStdout: true, AttachStderr: true });
  const stream = await execution.start({ hijack: true, stdin: false });
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on("data", (chunk: Buffer) => out.push(chunk));
  stderr.on("data", (chunk: Buffer) => err.push(chunk));
  docker.modem.demuxStream(stream, stdout, stderr);
  await new Promise<void>((resolve, reject) => {
    stream.on("end", resolve);
    stream.on("close", resolve);
    stream.on("error", reject);
  });
  const { ExitCode } = await execution.inspect();
  return {
    exitCode: ExitCode ?? -1,
    stdout: Buffer.concat(out).toString().trim(),
    stderr: Buffer.concat(err).toString().trim(),
  };
}
