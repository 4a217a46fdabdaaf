// ARM's conditional writes: If-Match and If-None-Match against a pool's etag (strong or weak, quoted or not, lists
// and "*"), answered with 412 PreconditionFailed.
import type { StoredPool } from "../../store/store.ts";
import { PreconditionFailedError } from "../errors.ts";

export function checkPreconditions(
  existing: StoredPool | undefined,
  ifMatch: string | undefined,
  ifNoneMatch: string | undefined,
): void {
  const unquote = (t: string) => t.trim().replace(/^W\//, "").replace(/^"|"$/g, "");
  if (ifMatch !== undefined) {
    const wanted = ifMatch.split(",").map(unquote);
    if (!existing || !(wanted.includes("*") || wanted.includes(existing.etag))) {
      throw new PreconditionFailedError(
        existing
          ? `The If-Match condition did not hold: the session pool's current etag is "${existing.etag}".`
          : "The If-Match condition did not hold: the session pool does not exist.",
      );
    }
  }
  if (ifNoneMatch !== undefined && existing) {
    const wanted = ifNoneMatch.split(",").map(unquote);
    if (wanted.includes("*") || wanted.includes(existing.etag)) {
      throw new PreconditionFailedError(
        "The If-None-Match condition did not hold: the session pool already exists.",
      );
    }
  }
}
