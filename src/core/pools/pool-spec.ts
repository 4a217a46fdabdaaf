// From a client's body (any api-version) to the canonical PoolDoc: legacy spellings folded, az CLI defaults
// applied, every rule checked. Also the PATCH merge. Pure functions: no store, no clock (time is passed in).
import { ValidationError } from "../errors.ts";
import { foldCase, isPlainObject, shapeChecker } from "./body-shape.ts";
import type {
  ContainerType,
  Identity,
  PoolDoc,
  PoolProperties,
  SessionContainer,
  SystemData,
} from "./pool-doc.ts";
import { PoolBody, type PoolBodyInput } from "./pool-schema.ts";
import { validatePool } from "./pool-validation.ts";

export const DEFAULT_MAX_CONCURRENT_SESSIONS = 10;
export const DEFAULT_READY_SESSION_INSTANCES = 5;
export const DEFAULT_COOLDOWN_SECONDS = 300;
export const DEFAULT_MAX_ALIVE_SECONDS = 3600;

export interface PoolRules {
  /** The largest maxConcurrentSessions a pool may ask for on this server. */
  maxSessionsCap: number;
}

export interface SecretInput {
  name: string;
  value?: string;
}

/** What a PUT or PATCH asks for, ready to store: the doc plus the secrets with their (optional) values. */
export interface PoolChange {
  doc: PoolDoc;
  secrets: SecretInput[] | undefined;
}

const bodyChecker = shapeChecker<PoolBodyInput>(PoolBody);
const bodySchema = PoolBody;

export function parsePoolBody(body: unknown): PoolBodyInput {
  if (!isPlainObject(body)) {
    throw new ValidationError("InvalidRequestContent", "The request body must be a JSON object.");
  }
  return bodyChecker.parse(body);
}

/** Builds the canonical doc for a PUT. `existing` is the stored doc when the PUT updates a pool. */
export function poolFromPut(
  input: PoolBodyInput,
  ctx: {
    name: string;
    rules: PoolRules;
    systemData: SystemData;
    existing?: PoolDoc;
    secretNames: Set<string>;
    /** False when the request's api-version does not define mcpServerSettings (default true). */
    mcpDefined?: boolean;
  },
): PoolChange {
  if (input.location === undefined || input.location.trim() === "") {
    throw new ValidationError("LocationRequired", "'location' is required.", "location");
  }
  const p = input.properties ?? {};
  const containerType = (p.containerType ?? "PythonLTS") as ContainerType;
  const legacy = p.dynamicPoolConfiguration;
  const lc = legacy?.lifecycleConfiguration ?? {};
  const lifecycleType =
    lc.lifecycleType ??
    legacy?.executionType ??
    (lc.maxAlivePeriodInSeconds !== undefined && lc.cooldownPeriodInSeconds === undefined
      ? "OnContainerExit"
      : "Timed");
  const cooldown = lc.cooldownPeriodInSeconds ?? legacy?.cooldownPeriodInSeconds;
  const lifecycleConfiguration: PoolProperties["dynamicPoolConfiguration"]["lifecycleConfiguration"] =
    lifecycleType === "Timed"
      ? {
          lifecycleType,
          cooldownPeriodInSeconds: cooldown ?? DEFAULT_COOLDOWN_SECONDS,
          ...(lc.maxAlivePeriodInSeconds === undefined
            ? {}
            : { maxAlivePeriodInSeconds: lc.maxAlivePeriodInSeconds }),
        }
      : {
          lifecycleType,
          maxAlivePeriodInSeconds: lc.maxAlivePeriodInSeconds ?? DEFAULT_MAX_ALIVE_SECONDS,
          ...(cooldown === undefined ? {} : { cooldownPeriodInSeconds: cooldown }),
        };
  const max = p.scaleConfiguration?.maxConcurrentSessions ?? DEFAULT_MAX_CONCURRENT_SESSIONS;
  const ready =
    p.scaleConfiguration?.readySessionInstances ??
    (Number.isInteger(max) && max >= 1
      ? // A custom pool keeps room for one session beyond its warm ones (Azure's rule for them).
        Math.min(DEFAULT_READY_SESSION_INSTANCES, containerType === "CustomContainer" ? max - 1 : max)
      : DEFAULT_READY_SESSION_INSTANCES);

  const properties: PoolProperties = {
    ...(p.environmentId === undefined ? {} : { environmentId: p.environmentId }),
    containerType,
    poolManagementType: p.poolManagementType ?? "Dynamic",
    scaleConfiguration: { maxConcurrentSessions: max, readySessionInstances: ready },
    secrets: (p.secrets ?? []).map((s) => ({ name: s.name })),
    dynamicPoolConfiguration: { lifecycleConfiguration },
    ...(p.customContainerTemplate
      ? { customContainerTemplate: template(p.customContainerTemplate, ctx.name) }
      : {}),
    sessionNetworkConfiguration: { status: p.sessionNetworkConfiguration?.status ?? "EgressDisabled" },
    ...(p.managedIdentitySettings
      ? {
          managedIdentitySettings: p.managedIdentitySettings.map((m) => ({
            ...m,
            lifecycle: m.lifecycle ?? "None",
          })),
        }
      : {}),
    ...(ctx.mcpDefined === false
      ? // An api-version without mcpServerSettings cannot express them: its PUT keeps what the pool has.
        ctx.existing?.properties.mcpServerSettings
        ? { mcpServerSettings: { ...ctx.existing.properties.mcpServerSettings } }
        : {}
      : p.mcpServerSettings
        ? {
            mcpServerSettings: {
              isMcpServerEnabled: p.mcpServerSettings.isMcpServerEnabled ?? false,
              isMcpServerApiKeyDisabled: p.mcpServerSettings.isMcpServerApiKeyDisabled ?? false,
            },
          }
        : {}),
    provisioningState: ctx.existing?.properties.provisioningState ?? "InProgress",
  };
  const doc: PoolDoc = {
    location: input.location,
    tags: input.tags ?? {},
    ...(input.identity && input.identity.type !== "None"
      ? { identity: identity(input.identity, ctx.existing?.identity) }
      : {}),
    properties,
    systemData: ctx.systemData,
  };
  if (ctx.existing) checkImmutable(ctx.existing, doc, "PUT");
  // A PUT replaces the whole pool, secrets included: one that sends none leaves the pool with none.
  const secrets = (p.secrets ?? []).map((s) => ({
    name: s.name,
    ...(s.value === undefined ? {} : { value: s.value }),
  }));
  validatePool(doc, { rules: ctx.rules, secrets, secretNames: ctx.secretNames });
  return { doc, secrets };
}

function template(
  t: NonNullable<NonNullable<PoolBodyInput["properties"]>["customContainerTemplate"]>,
  poolName: string,
): PoolProperties["customContainerTemplate"] {
  const rc = t.registryCredentials;
  const server = rc?.server ?? rc?.registryServer;
  const registryCredentials = rc
    ? {
        ...(server === undefined ? {} : { server }),
        ...(rc.username === undefined ? {} : { username: rc.username }),
        ...(rc.passwordSecretRef === undefined ? {} : { passwordSecretRef: rc.passwordSecretRef }),
        ...(rc.identity === undefined ? {} : { identity: rc.identity }),
      }
    : undefined;
  const containers: SessionContainer[] = (t.containers ?? []).map((c) => {
    const out: SessionContainer = { image: c.image ?? "", name: c.name ?? poolName };
    if (c.command) out.command = c.command;
    if (c.args) out.args = c.args;
    if (c.env) out.env = c.env.map((e) => ({ ...e }));
    if (c.resources) out.resources = { ...c.resources };
    if (c.probes) out.probes = c.probes.map((pr) => ({ ...pr }));
    return out;
  });
  return {
    ...(registryCredentials ? { registryCredentials } : {}),
    containers,
    ingress: { targetPort: t.ingress?.targetPort ?? 0 },
  };
}

/** A stable fake GUID derived from `seed`, so generated identity ids survive updates and restarts. */
export function stableUuid(seed: string): string {
  // FNV-1a over the seed, four rounds with different offsets: deterministic, no crypto needed for an id.
  const words: string[] = [];
  for (let round = 0; round < 4; round++) {
    let h = 0x811c9dc5 ^ round;
    for (const ch of `${round}:${seed}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    words.push(h.toString(16).padStart(8, "0"));
  }
  const hex = words.join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

const TENANT_ID = "00000000-0000-0000-0000-5e551011b001";

function identity(input: NonNullable<PoolBodyInput["identity"]>, existing: Identity | undefined): Identity {
  const type = input.type as Identity["type"];
  const out: Identity = { type };
  if (type.includes("SystemAssigned")) {
    out.principalId = existing?.principalId ?? stableUuid(`principal:${crypto.randomUUID()}`);
    out.tenantId = TENANT_ID;
  }
  if (type.includes("UserAssigned")) {
    out.userAssignedIdentities = Object.fromEntries(
      Object.keys(input.userAssignedIdentities ?? {}).map((id) => [
        id,
        {
          principalId: stableUuid(`uami-principal:${id.toLowerCase()}`),
          clientId: stableUuid(`uami-client:${id.toLowerCase()}`),
        },
      ]),
    );
  }
  return out;
}

const IMMUTABLE: { path: string; get: (d: PoolDoc) => unknown }[] = [
  { path: "location", get: (d) => d.location.replace(/\s+/g, "").toLowerCase() },
  { path: "properties.containerType", get: (d) => d.properties.containerType },
  { path: "properties.environmentId", get: (d) => d.properties.environmentId?.toLowerCase() },
  { path: "properties.poolManagementType", get: (d) => d.properties.poolManagementType },
];

function checkImmutable(existing: PoolDoc, next: PoolDoc, verb: string): void {
  for (const field of IMMUTABLE) {
    if (field.get(existing) !== field.get(next)) {
      throw new ValidationError(
        "PropertyChangeNotAllowed",
        `'${field.path}' cannot be changed by ${verb} (it is ${JSON.stringify(field.get(existing))}); delete and re-create the pool to change it.`,
        field.path,
      );
    }
  }
}

/** Properties a PATCH may carry (SessionPoolUpdatableProperties). */
const PATCHABLE_PROPERTIES = new Set([
  "scaleConfiguration",
  "secrets",
  "dynamicPoolConfiguration",
  "customContainerTemplate",
  "sessionNetworkConfiguration",
]);
const PATCHABLE_TOP = new Set(["tags", "identity", "properties"]);

/** RFC 7396 JSON merge: objects merge, null removes, anything else (arrays too) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/**
 * Applies a PATCH body to the stored doc. Fields outside SessionPoolUpdatableProperties are refused by name;
 * the merged result is validated like a PUT.
 */
export function poolFromPatch(
  rawBody: unknown,
  ctx: {
    name: string;
    rules: PoolRules;
    systemData: SystemData;
    existing: PoolDoc;
    secretNames: Set<string>;
  },
): PoolChange {
  if (!isPlainObject(rawBody)) {
    throw new ValidationError("InvalidRequestContent", "The request body must be a JSON object.");
  }
  for (const key of Object.keys(rawBody)) {
    if (!PATCHABLE_TOP.has(key) && !["id", "name", "type", "systemdata"].includes(key.toLowerCase())) {
      const known =
        ["location", "tags", "identity", "properties"].find((k) => k === key.toLowerCase()) ?? key;
      throw notUpdatable(known);
    }
  }
  // Fold spellings first so the merge sees the schema's names; the shape is checked on the merged result, after
  // the patch's nulls (removals) have been applied.
  const patch = foldCase(rawBody, bodySchema) as Record<string, unknown>;
  const props = isPlainObject(patch["properties"]) ? patch["properties"] : undefined;
  for (const key of Object.keys(props ?? {})) {
    if (!PATCHABLE_PROPERTIES.has(key)) throw notUpdatable(`properties.${key}`);
  }
  // Merge in the wire shape, then re-run the PUT path so defaults and rules apply to the result.
  const merged = mergePatch(docToInput(ctx.existing), patch) as Record<string, unknown>;
  if (isPlainObject(patch["tags"])) {
    // ARM replaces tags as a whole: the tags sent are the pool's tags ('null' values just drop out).
    merged["tags"] = Object.fromEntries(Object.entries(patch["tags"]).filter(([, v]) => v !== null));
  }
  const mergedProps = merged["properties"];
  if (isPlainObject(props?.["dynamicPoolConfiguration"]) && isPlainObject(mergedProps)) {
    // A lifecycle change replaces the lifecycle settings rather than mixing old and new fields.
    mergedProps["dynamicPoolConfiguration"] = mergePatch({}, props["dynamicPoolConfiguration"]);
  }
  const change = poolFromPut(parsePoolBody(merged), { ...ctx, existing: ctx.existing });
  return { doc: change.doc, secrets: props?.["secrets"] === undefined ? undefined : change.secrets };
}

function notUpdatable(path: string): ValidationError {
  return new ValidationError(
    "PropertyNotUpdatable",
    `'${path}' cannot be updated by PATCH; updatable are tags, identity and properties.{${[...PATCHABLE_PROPERTIES].join(", ")}}.`,
    path,
  );
}

/** The canonical doc as a PUT body, so a PATCH can be merged into it. */
export function docToInput(doc: PoolDoc): PoolBodyInput {
  const { provisioningState: _state, provisioningError: _error, ...properties } = doc.properties;
  return JSON.parse(
    JSON.stringify({
      location: doc.location,
      tags: doc.tags,
      ...(doc.identity
        ? {
            identity: {
              type: doc.identity.type,
              ...(doc.identity.userAssignedIdentities
                ? {
                    userAssignedIdentities: Object.fromEntries(
                      Object.keys(doc.identity.userAssignedIdentities).map((k) => [k, {}]),
                    ),
                  }
                : {}),
            },
          }
        : {}),
      properties,
    }),
  ) as PoolBodyInput;
}
