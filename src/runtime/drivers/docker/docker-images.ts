// Image inspection and pulls, with registry refusals told apart from missing images.
import type Docker from "dockerode";
import { ImageNotFoundError, ImagePullAuthError } from "../../errors.ts";
import type { ImageInfo, RegistryAuth } from "../../sandbox-driver.ts";
import { statusCodeOf } from "./docker-errors.ts";
import { readJsonLines } from "./docker-events.ts";

/** undefined when the image is not present locally. */
export async function inspectImage(docker: Docker, ref: string): Promise<ImageInfo | undefined> {
  try {
    // dockerode's image inspect takes no signal; callers race it against their deadline.
    const image = await docker.getImage(ref).inspect();
    const info: ImageInfo = { id: image.Id, ref, labels: image.Config?.Labels ?? {} };
    if (image.Config?.User) info.user = image.Config.User;
    return info;
  } catch (err) {
    if (statusCodeOf(err) === 404) return undefined;
    throw err;
  }
}

/**
 * Pulls `ref` and follows the progress stream to its end: the engine reports most failures as an {"error"}
 * line inside a 200 answer. (Our own line reader rather than modem.followProgress, whose JSON.parse would
 * throw out of a stream handler on a malformed line.)
 */
export async function pullImage(
  docker: Docker,
  ref: string,
  auth: RegistryAuth | undefined,
  signal: AbortSignal,
): Promise<ImageInfo> {
  const options: Record<string, unknown> = { abortSignal: signal };
  if (auth)
    options["authconfig"] = { username: auth.username, password: auth.password, serveraddress: auth.server };
  const stream = await docker.pull(ref, options);
  let failure: string | undefined;
  await readJsonLines(
    stream,
    (line) => {
      const { error, errorDetail } = line as { error?: string; errorDetail?: { message?: string } };
      failure ??= errorDetail?.message ?? error;
    },
    signal,
  );
  if (failure !== undefined) throw pullFailure(ref, auth, failure, undefined);
  const image = await inspectImage(docker, ref);
  if (!image) throw new ImageNotFoundError(ref, "the pull finished but the image is not present");
  return image;
}

/** Refused credentials (401/403, "unauthorized", ...) become ImagePullAuthError; anything else ImageNotFoundError. */
export function pullFailure(
  ref: string,
  auth: RegistryAuth | undefined,
  detail: string,
  cause: unknown,
): Error {
  const status = statusCodeOf(cause);
  const refused =
    status === 401 ||
    status === 403 ||
    /unauthori[sz]ed|authentication required|incorrect username or password|no basic auth credentials/i.test(
      detail,
    ) ||
    // Docker Hub answers a wrong password on a private repository like a missing one.
    (auth !== undefined && /pull access denied|access (to the resource )?(is )?denied/i.test(detail));
  if (refused) return new ImagePullAuthError(ref, auth?.server ?? registryOf(ref), detail, cause);
  return new ImageNotFoundError(ref, detail, cause);
}

/** The registry host of an image reference: its first component when it looks like a host, else Docker Hub. */
export function registryOf(ref: string): string {
  const slash = ref.indexOf("/");
  if (slash < 0) return "docker.io";
  const first = ref.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost" ? first : "docker.io";
}
