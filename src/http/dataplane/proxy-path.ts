// Where a request under a pool endpoint goes in a custom container: the path after the endpoint, cut from the raw
// request target by segments. The router hands out decoded parameters, so a cut by the length of the decoded pool
// name is wrong as soon as the client percent-encodes a prefix segment (`/sessionPools/%73ecpool/...`).
import { BadRequestError } from "../errors.ts";

export interface ProxyPath {
  /** The endpoint's own parameters, decoded (as the router decodes them). */
  subscriptionId: string;
  resourceGroup: string;
  poolName: string;
  /** The endpoint path, canonically encoded (sent to the container as X-Forwarded-Prefix). */
  prefix: string;
  /** The path after the endpoint, canonically encoded ("/" at least), with the client's query string. */
  path: string;
  /** Whether the path after the endpoint, decoded, is stopSession: the server answers it, never the container. */
  stopSession: boolean;
}

const KEYWORDS = ["subscriptions", "resourcegroups", "sessionpools"] as const;

/**
 * The parts of a raw request target (`request.url`) under `/subscriptions/{s}/resourceGroups/{g}/sessionPools/{p}`,
 * or undefined when it is not under a pool endpoint. A segment with a broken %-escape is a 400.
 */
export function proxyPathOf(rawUrl: string): ProxyPath | undefined {
  const cut = rawUrl.search(/[?#]/);
  const pathPart = cut === -1 ? rawUrl : rawUrl.slice(0, cut);
  // A fragment never belongs in a request target; a query is passed on byte for byte (the container parses it).
  const query = cut === -1 || rawUrl[cut] === "#" ? "" : rawUrl.slice(cut).replace(/#.*$/s, "");
  const raw = pathPart.split("/");
  if (raw.length < 7 || raw[0] !== "") return undefined;
  const segments = raw.map(decodeSegment);
  for (const [i, keyword] of KEYWORDS.entries()) {
    if (segments[1 + 2 * i]!.toLowerCase() !== keyword) return undefined;
  }
  const [subscriptionId, resourceGroup, poolName] = [segments[2]!, segments[4]!, segments[6]!];
  const rest = segments.slice(7);
  // The router ignores one trailing slash: `/.management/stopSession/` is the server's route as well.
  const routed = rest.at(-1) === "" ? rest.slice(0, -1) : rest;
  return {
    subscriptionId,
    resourceGroup,
    poolName,
    prefix: `/subscriptions/${encodeSegment(subscriptionId)}/resourceGroups/${encodeSegment(resourceGroup)}/sessionPools/${encodeSegment(poolName)}`,
    path: `/${rest.map(encodeSegment).join("/")}${query}`,
    stopSession:
      routed.length === 2 &&
      routed[0]!.toLowerCase() === ".management" &&
      routed[1]!.toLowerCase() === "stopsession",
  };
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadRequestError(`The URL path segment '${segment.slice(0, 100)}' has a broken %-escape.`);
  }
}

/**
 * A decoded segment as a path segment again: everything RFC 3986 allows in one (unreserved, sub-delims, ':' and
 * '@') stays as it is, the rest is %-escaped, '/' included, so a segment never splits in two. A segment of dots
 * only is escaped too: the container must not read it as "this" or "the parent" directory.
 */
export function encodeSegment(segment: string): string {
  if (segment === "." || segment === "..") return segment.replaceAll(".", "%2E");
  return encodeURIComponent(segment).replace(/%(24|26|2B|2C|3B|3D|3A|40)/g, (_, hex: string) =>
    String.fromCharCode(Number.parseInt(hex, 16)),
  );
}
