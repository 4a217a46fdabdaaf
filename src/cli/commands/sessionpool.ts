// `sessionpool create|update|show|list|delete|get-token`: the management API (Microsoft.App/sessionPools),
// with az's HTTP habits: PUT then poll Azure-AsyncOperation then GET; GET then PATCH only what changed.
import { createInterface } from "node:readline/promises";
import type { CliContext } from "../context.ts";
import { ApiError, UsageError } from "../errors.ts";
import { type HttpClient, parseJson } from "../http-client.ts";
import { DEFAULT_TIMEOUT_SECONDS, Progress, waitForOperation } from "../lro.ts";
import type { CommandResult, Row } from "../output.ts";
import { type PoolRef, poolPath, poolsPath, poolTarget, poolTargets, type RefFlags } from "../pool-ref.ts";
import { buildCreateBody, buildPatchBody, type PoolFlags } from "./pool-body.ts";
import type { PoolResource } from "./pool-resource.ts";

/** Where a pool is created when neither --location nor a configured default says. */
export const FALLBACK_LOCATION = "local";

export interface WaitFlags {
  wait?: boolean;
  timeout?: number;
}

export async function createPool(
  ctx: CliContext,
  f: PoolFlags & RefFlags & WaitFlags,
): Promise<CommandResult> {
  const ref = poolTarget(ctx, f);
  const location = f.location ?? ctx.default("location") ?? FALLBACK_LOCATION;
  const body = buildCreateBody({ ...f, location }, { ...ref, warn: (m) => ctx.log.warn(m) });
  const client = ctx.client();
  const res = await client.request("PUT", poolPath(ref), { json: body });
  if (f.wait === false) return poolResult(parseJson(res));
  await waitForOperation(client, res, waitOptions(ctx, client, ref, "Provisioning", f));
  return poolResult(await client.json("GET", poolPath(ref)));
}

export async function updatePool(
  ctx: CliContext,
  f: PoolFlags & RefFlags & WaitFlags,
): Promise<CommandResult> {
  const results: unknown[] = [];
  const refs = poolTargets(ctx, f);
  for (const ref of refs) {
    const client = ctx.client();
    const existing = (await client.json("GET", poolPath(ref))) as PoolResource;
    const body = buildPatchBody(f, existing, { ...ref, warn: (m) => ctx.log.warn(m) });
    if (Object.keys(body).length === 0) {
      // Only --location, naming where the pool already is (az sends an empty PATCH and prints the pool).
      ctx.log.info(`${ref.name} is already in ${existing.location}: nothing to change.`);
      if (f.wait !== false) results.push(existing);
      continue;
    }
    ctx.log.info(`PATCH ${ref.name}: ${describePatch(body)}`);
    const res = await client.request("PATCH", poolPath(ref), { json: body });
    if (f.wait === false) continue;
    const final = await waitForOperation(client, res, waitOptions(ctx, client, ref, "Updating", f));
    const finalBody = final && final.status === 200 ? parseJson(final) : undefined;
    results.push(finalBody ?? (await client.json("GET", poolPath(ref))));
  }
  if (f.wait === false) return { value: undefined };
  return poolResult(refs.length === 1 ? results[0] : results);
}

export async function showPool(ctx: CliContext, f: RefFlags): Promise<CommandResult> {
  const refs = poolTargets(ctx, f);
  const client = ctx.client();
  const pools: unknown[] = [];
  for (const ref of refs) pools.push(await client.json("GET", poolPath(ref)));
  return poolResult(refs.length === 1 ? pools[0] : pools);
}

export async function listPools(ctx: CliContext, f: { resourceGroup?: string }): Promise<CommandResult> {
  const group = f.resourceGroup ?? ctx.default("group");
  const client = ctx.client();
  const pools: unknown[] = [];
  let url: string | undefined = poolsPath(ctx.subscription, group);
  while (url) {
    const page = (await client.json("GET", url)) as { value?: unknown[]; nextLink?: string | null };
    pools.push(...(page.value ?? []));
    url = page.nextLink ?? undefined;
  }
  return poolResult(pools);
}

export async function deletePool(
  ctx: CliContext,
  f: RefFlags & WaitFlags & { yes?: boolean },
): Promise<CommandResult> {
  const refs = poolTargets(ctx, f);
  const client = ctx.client();
  // A prompt names pools that exist: a missing one ends here with the server's 404 (exit status 3), not with a
  // question about it. With --yes there is no question, and DELETE of a missing pool is a success (204), as in az.
  if (f.yes !== true) for (const ref of refs) await client.request("GET", poolPath(ref));
  await confirmDelete(ctx, refs, f.yes === true);
  for (const ref of refs) {
    const res = await client.request("DELETE", poolPath(ref));
    if (res.status === 204) {
      ctx.log.info(`session pool ${ref.name} does not exist (nothing to delete).`);
      continue;
    }
    if (f.wait === false) continue;
    await waitForOperation(client, res, waitOptions(ctx, client, ref, "Deleting", f));
    ctx.log.note(`Session pool ${ref.name} successfully deleted`);
  }
  return { value: undefined };
}

export async function getToken(ctx: CliContext, f: RefFlags): Promise<CommandResult> {
  const refs = poolTargets(ctx, f);
  const client = ctx.client();
  const answers: { properties?: { token?: string } }[] = [];
  for (const ref of refs) {
    answers.push(
      (await client.json("POST", poolPath(ref, "/getAuthtoken"))) as { properties?: { token?: string } },
    );
  }
  return {
    value: refs.length === 1 ? answers[0] : answers,
    raw: answers.map((a) => `${a.properties?.token ?? ""}\n`).join(""),
    table: (v) =>
      (Array.isArray(v) ? v : [v]).map((a: { name?: string; properties?: { expires?: string } }) => ({
        Name: a.name,
        Expires: a.properties?.expires,
      })),
  };
}

async function confirmDelete(ctx: CliContext, refs: PoolRef[], yes: boolean): Promise<void> {
  if (yes) return;
  const names = refs.map((r) => r.name).join(", ");
  if (!ctx.terminal.stdinIsTTY) {
    throw new UsageError(
      `deleting ${names} needs confirmation, and input is not a terminal: pass --yes (-y) to delete without a prompt.`,
    );
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(
      `Delete session pool ${names} and end all its sessions? Are you sure you want to perform this operation? (y/n): `,
    );
    if (!/^y(es)?$/i.test(answer.trim())) throw new UsageError("delete cancelled.");
  } finally {
    rl.close();
  }
}

function waitOptions(ctx: CliContext, client: HttpClient, ref: PoolRef, verb: string, f: WaitFlags) {
  const progress = new Progress(ctx.terminal.stderrIsTTY && !ctx.log.levels.onlyShowErrors);
  return {
    label: `${verb} ${ref.name}`,
    timeoutMs: (f.timeout ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
    progress,
    ...(verb === "Deleting" ? {} : { detail: () => readyDetail(client, ref) }),
  };
}

/** "ready sessions 3/5" from the server's /metrics gauge; undefined when the server has no metrics. */
async function readyDetail(client: HttpClient, ref: PoolRef): Promise<string | undefined> {
  const pool = (await client.json("GET", poolPath(ref))) as PoolResource;
  const want = pool.properties?.scaleConfiguration?.readySessionInstances;
  let text: string;
  try {
    text = (await client.request("GET", "/metrics", { headers: { accept: "text/plain" } })).body.toString();
  } catch (err) {
    if (err instanceof ApiError) return undefined;
    throw err;
  }
  const key = `${ref.subscription}/${ref.resourceGroup}/${ref.name}`.toLowerCase();
  const line = text
    .split("\n")
    .find((l) => l.startsWith("sessionpool_pool_ready_sessions{") && l.includes(`pool="${key}"`));
  const ready = line ? Number(line.trim().split(/\s+/).at(-1)) : 0;
  return want === undefined ? undefined : `ready sessions ${Number.isFinite(ready) ? ready : 0}/${want}`;
}

function describePatch(body: Record<string, unknown>): string {
  const props = Object.keys((body["properties"] as Record<string, unknown> | undefined) ?? {});
  return [
    ...Object.keys(body).filter((k) => k !== "properties"),
    ...props.map((p) => `properties.${p}`),
  ].join(", ");
}

function poolResult(value: unknown): CommandResult {
  return { value, table: poolRows };
}

/** -o table for pools: the columns people look for first. */
export function poolRows(value: unknown): Row[] {
  const pools = (Array.isArray(value) ? value : [value]) as PoolResource[];
  return pools.map((p) => ({
    Name: p.name,
    ResourceGroup: /\/resourceGroups\/([^/]+)/i.exec(p.id ?? "")?.[1],
    Location: p.location,
    ContainerType: p.properties?.containerType,
    ProvisioningState: p.properties?.provisioningState,
    MaxSessions: p.properties?.scaleConfiguration?.maxConcurrentSessions,
    ReadySessions: p.properties?.scaleConfiguration?.readySessionInstances,
  }));
}
