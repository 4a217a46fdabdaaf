// Which pool(s) a command is about: -n/-g (with the configured default group) or --ids, and the ARM URLs for them.
import { ARM_API_VERSION, type CliContext } from "./context.ts";
import { UsageError } from "./errors.ts";

export interface PoolRef {
  subscription: string;
  resourceGroup: string;
  name: string;
}

export interface RefFlags {
  name?: string;
  resourceGroup?: string;
  ids?: string[];
}

const POOL_ID =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.App\/sessionPools\/([^/]+)\/?$/i;

export function parsePoolId(id: string): PoolRef {
  const m = POOL_ID.exec(id.trim());
  if (!m) {
    throw new UsageError(
      `--ids: '${id}' is not a session pool resource id (/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/sessionPools/{name}).`,
    );
  }
  return { subscription: m[1]!, resourceGroup: m[2]!, name: m[3]! };
}

/** The pools named by --ids, or the one named by -n and -g. */
export function poolTargets(ctx: CliContext, f: RefFlags): PoolRef[] {
  if (f.ids !== undefined) {
    if (f.name !== undefined || f.resourceGroup !== undefined) {
      throw new UsageError("--ids cannot be combined with --name/-n or --resource-group/-g.");
    }
    if (f.ids.length === 0) throw new UsageError("--ids needs at least one resource id.");
    return f.ids.map(parsePoolId);
  }
  return [poolTarget(ctx, f)];
}

export function poolTarget(ctx: CliContext, f: RefFlags): PoolRef {
  const missing: string[] = [];
  const resourceGroup = f.resourceGroup ?? ctx.default("group");
  if (f.name === undefined) missing.push("--name/-n");
  if (resourceGroup === undefined) missing.push("--resource-group/-g");
  if (missing.length > 0) {
    throw new UsageError(
      `the following arguments are required: ${missing.join(", ")}${f.ids === undefined && missing.length === 2 ? " (or --ids)" : ""}.${resourceGroup === undefined ? " A default group can be set with 'sessionpool configure --defaults group=NAME'." : ""}`,
    );
  }
  return { subscription: ctx.subscription, resourceGroup: resourceGroup!, name: f.name! };
}

export function poolPath(ref: PoolRef, suffix = ""): string {
  return `/subscriptions/${enc(ref.subscription)}/resourceGroups/${enc(ref.resourceGroup)}/providers/Microsoft.App/sessionPools/${enc(ref.name)}${suffix}?api-version=${ARM_API_VERSION}`;
}

export function poolsPath(subscription: string, resourceGroup?: string): string {
  const rg = resourceGroup === undefined ? "" : `/resourceGroups/${enc(resourceGroup)}`;
  return `/subscriptions/${enc(subscription)}${rg}/providers/Microsoft.App/sessionPools?api-version=${ARM_API_VERSION}`;
}

/** The data-plane base URL the server gives pools, for when the pool cannot be read over ARM. */
export function dataPlaneBase(endpoint: string, ref: PoolRef): string {
  return `${endpoint}/subscriptions/${enc(ref.subscription)}/resourceGroups/${enc(ref.resourceGroup)}/sessionPools/${enc(ref.name)}`;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
