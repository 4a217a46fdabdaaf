// From `sessionpool create/update` flags to the ARM body, following az's containerapp sessionpool decorators:
// defaults, lifecycle inference and exclusions, registry password as a pool secret, managed identities.
// Pure functions: no I/O; warnings go through the callback.
import { UsageError } from "../errors.ts";
import {
  clearsList,
  environmentId,
  identityResourceId,
  isSystem,
  parseEnvVars,
  parseList,
  parseSecrets,
  registrySecretRef,
  type Secret,
} from "./flag-values.ts";
import type { Container, PoolResource, Template } from "./pool-resource.ts";

export const CONTAINER_TYPES = ["PythonLTS", "CustomContainer", "NodeLTS", "Shell"] as const;
export const LIFECYCLE_TYPES = ["Timed", "OnContainerExit"] as const;
export const NETWORK_STATUSES = ["EgressDisabled", "EgressEnabled"] as const;

export const DEFAULT_MAX_SESSIONS = 10;
export const DEFAULT_READY_SESSIONS = 5;
export const DEFAULT_COOLDOWN_SECONDS = 300;
export const DEFAULT_MAX_ALIVE_SECONDS = 3600;
/** az's HELLO_WORLD_IMAGE, the image a CustomContainer pool gets without --image. */
export const DEFAULT_IMAGE = "mcr.microsoft.com/k8se/quickstart:latest";

const POOL_NAME = /^[a-z][a-z0-9]*$/;

export interface PoolFlags {
  location?: string;
  environment?: string;
  containerType?: string;
  lifecycleType?: string;
  cooldownPeriod?: number;
  maxAlivePeriod?: number;
  maxSessions?: number;
  readySessions?: number;
  networkStatus?: string;
  secrets?: string[];
  image?: string;
  containerName?: string;
  cpu?: number;
  memory?: string;
  envVars?: string[];
  command?: string[];
  args?: string[];
  targetPort?: number;
  registryServer?: string;
  registryUsername?: string;
  registryPassword?: string;
  registryIdentity?: string;
  miSystemAssigned?: boolean;
  miUserAssigned?: string[];
}

export interface BodyContext {
  subscription: string;
  resourceGroup: string;
  name: string;
  warn: (message: string) => void;
}

type Json = Record<string, unknown>;
export function validatePoolName(name: string): void {
  if (name.length < 3 || name.length > 63 || !POOL_NAME.test(name)) {
    throw new UsageError(
      `--name '${name}' is not a valid session pool name: use 3 to 63 characters, a lowercase letter first, then lowercase letters and digits.`,
    );
  }
}

const CONTAINER_FLAGS: [keyof PoolFlags, string][] = [
  ["image", "--image"],
  ["containerName", "--container-name"],
  ["cpu", "--cpu"],
  ["memory", "--memory"],
  ["envVars", "--env-vars"],
  ["command", "--command"],
  ["args", "--args"],
];
const REGISTRY_FLAGS: [keyof PoolFlags, string][] = [
  ["registryServer", "--registry-server"],
  ["registryUsername", "--registry-username"],
  ["registryPassword", "--registry-password"],
  ["registryIdentity", "--registry-identity"],
];

function given(f: PoolFlags, list: [keyof PoolFlags, string][]): string[] {
  return list.filter(([k]) => f[k] !== undefined).map(([, flag]) => flag);
}

function isCustom(containerType: string | undefined): boolean {
  return containerType === "CustomContainer";
}

/** az's lifecycle rules, for create and update alike. */
function checkLifecycle(f: PoolFlags, containerType: string): void {
  if (!isCustom(containerType)) {
    if (f.lifecycleType !== undefined && f.lifecycleType !== "Timed") {
      throw new UsageError(`the container type ${containerType} only supports lifecycle type 'Timed'.`);
    }
    if (f.maxAlivePeriod !== undefined) {
      throw new UsageError(`the container type ${containerType} does not support --max-alive-period.`);
    }
  }
  if (f.maxAlivePeriod !== undefined && f.cooldownPeriod !== undefined) {
    throw new UsageError("--max-alive-period and --cooldown-period cannot be set at the same time.");
  }
  if (
    f.maxAlivePeriod !== undefined &&
    f.lifecycleType !== undefined &&
    f.lifecycleType !== "OnContainerExit"
  ) {
    throw new UsageError("--max-alive-period can only be set when --lifecycle-type is 'OnContainerExit'.");
  }
  if (f.cooldownPeriod !== undefined && f.lifecycleType !== undefined && f.lifecycleType !== "Timed") {
    throw new UsageError("--cooldown-period can only be set when --lifecycle-type is 'Timed'.");
  }
}

function checkRegistryFlags(f: PoolFlags, existingServer?: string): void {
  const server = f.registryServer ?? existingServer;
  if (server === undefined && given(f, REGISTRY_FLAGS).length > 0) {
    throw new UsageError(`${given(f, REGISTRY_FLAGS).join(", ")} need --registry-server.`);
  }
  if (f.registryPassword !== undefined && f.registryUsername === undefined && existingServer === undefined) {
    throw new UsageError("--registry-password needs --registry-username.");
  }
}

/** The PUT body for `create`. */
export function buildCreateBody(f: PoolFlags, ctx: BodyContext): Json {
  validatePoolName(ctx.name);
  const containerType = f.containerType ?? "PythonLTS";
  const custom = isCustom(containerType);
  if (!custom) {
    if (f.environment !== undefined) {
      throw new UsageError(`do not pass --environment when using container type ${containerType}.`);
    }
    const only = [...given(f, CONTAINER_FLAGS), ...given(f, REGISTRY_FLAGS)];
    if (f.targetPort !== undefined) only.push("--target-port");
    if (only.length > 0) {
      throw new UsageError(
        `${only.join(", ")} ${only.length === 1 ? "applies" : "apply"} only to --container-type CustomContainer (this pool would be ${containerType}).`,
      );
    }
  } else if (f.targetPort === undefined) {
    throw new UsageError("--target-port is required when --container-type is CustomContainer.");
  }
  checkLifecycle(f, containerType);
  checkRegistryFlags(f);
  if (f.registryUsername !== undefined && f.registryPassword === undefined && !f.registryIdentity) {
    throw new UsageError("--registry-username needs --registry-password (or use --registry-identity).");
  }

  const maxSessions = f.maxSessions ?? DEFAULT_MAX_SESSIONS;
  // az always sends 5; never more than the pool may hold, so `--max-sessions 2` alone still works (a custom
  // pool keeps room for one more than its warm sessions, as the server requires).
  const readySessions =
    f.readySessions ??
    Math.min(DEFAULT_READY_SESSIONS, containerType === "CustomContainer" ? maxSessions - 1 : maxSessions);
  // On create an emptied list (`--secrets ""`) is the same as none: nothing is sent.
  let secrets = f.secrets === undefined || clearsList(f.secrets) ? undefined : parseSecrets(f.secrets);

  const properties: Json = {
    poolManagementType: "Dynamic",
    containerType,
    ...(f.environment === undefined ? {} : { environmentId: environmentId(f.environment, ctx) }),
    scaleConfiguration: { maxConcurrentSessions: maxSessions, readySessionInstances: readySessions },
    dynamicPoolConfiguration: { lifecycleConfiguration: createLifecycle(f) },
    sessionNetworkConfiguration: { status: f.networkStatus ?? "EgressDisabled" },
  };
  if (custom) {
    const container: Container = {
      name: f.containerName ?? ctx.name.toLowerCase(),
      image: f.image ?? DEFAULT_IMAGE,
    };
    if (f.envVars !== undefined && !clearsList(f.envVars)) container.env = parseEnvVars(f.envVars);
    if (f.command !== undefined && !clearsList(f.command)) container.command = f.command;
    if (f.args !== undefined && !clearsList(f.args)) container.args = f.args;
    if (f.cpu !== undefined || f.memory !== undefined) {
      container.resources = {
        ...(f.cpu === undefined ? {} : { cpu: f.cpu }),
        ...(f.memory === undefined ? {} : { memory: f.memory }),
      };
    }
    const template: Template = { containers: [container], ingress: { targetPort: f.targetPort! } };
    if (f.registryServer !== undefined) {
      const rc: NonNullable<Template["registryCredentials"]> = { server: f.registryServer };
      if (f.registryUsername !== undefined) {
        rc.username = f.registryUsername;
        secrets ??= [];
        if (f.registryPassword !== undefined) {
          rc.passwordSecretRef = registrySecretRef(
            secrets,
            f.registryUsername,
            f.registryServer,
            f.registryPassword,
            ctx.warn,
          );
        }
      }
      if (f.registryIdentity !== undefined) rc.identity = f.registryIdentity;
      template.registryCredentials = rc;
    }
    properties["customContainerTemplate"] = template;
  }
  if (secrets !== undefined) properties["secrets"] = secrets;
  const settings = identitySettings(f, ctx);
  if (settings.length > 0) properties["managedIdentitySettings"] = settings;

  const identity = identityFor(f, ctx, undefined);
  return {
    location: f.location,
    ...(identity ? { identity } : {}),
    properties,
  };
}

function createLifecycle(f: PoolFlags): Json {
  const type =
    f.lifecycleType ??
    (f.cooldownPeriod !== undefined ? "Timed" : f.maxAlivePeriod !== undefined ? "OnContainerExit" : "Timed");
  return type === "Timed"
    ? { lifecycleType: type, cooldownPeriodInSeconds: f.cooldownPeriod ?? DEFAULT_COOLDOWN_SECONDS }
    : { lifecycleType: type, maxAlivePeriodInSeconds: f.maxAlivePeriod ?? DEFAULT_MAX_ALIVE_SECONDS };
}

/** The PATCH body for `update`: only what the flags change, as az's update decorator builds it. */
export function buildPatchBody(f: PoolFlags, existing: PoolResource, ctx: BodyContext): Json {
  const p = existing.properties ?? {};
  const containerType = p.containerType ?? "PythonLTS";
  const custom = isCustom(containerType);
  checkLifecycle(f, containerType);
  const properties: Json = {};
  const body: Json = {};

  const identity = identityFor(f, ctx, existing.identity);
  if (identity) {
    body["identity"] = identity;
    if (f.miSystemAssigned || f.miUserAssigned !== undefined) {
      ctx.warn(
        "update assigns the identities to the pool, but ARM's PATCH cannot change managedIdentitySettings, so code in sessions cannot use new identities (lifecycle 'Main'); re-create the pool with --mi-system-assigned/--mi-user-assigned for that.",
      );
    }
  }

  // az takes --location on update too. The same region (as ARM compares them: no spaces, any case) changes
  // nothing and is not sent; another one is, and the server answers (this server refuses: a pool cannot move).
  if (f.location !== undefined && !sameLocation(f.location, existing.location)) {
    body["location"] = f.location;
  }

  if (f.lifecycleType !== undefined || f.cooldownPeriod !== undefined || f.maxAlivePeriod !== undefined) {
    const lc: Json = {};
    const current = p.dynamicPoolConfiguration?.lifecycleConfiguration;
    if (f.lifecycleType !== undefined) lc["lifecycleType"] = f.lifecycleType;
    if (f.cooldownPeriod !== undefined) lc["cooldownPeriodInSeconds"] = f.cooldownPeriod;
    if (f.maxAlivePeriod !== undefined) lc["maxAlivePeriodInSeconds"] = f.maxAlivePeriod;
    // Naming the current type again keeps its period instead of resetting it to the default.
    if (f.lifecycleType !== undefined && f.lifecycleType === current?.lifecycleType) {
      if (f.lifecycleType === "Timed" && f.cooldownPeriod === undefined && current.cooldownPeriodInSeconds)
        lc["cooldownPeriodInSeconds"] = current.cooldownPeriodInSeconds;
      if (
        f.lifecycleType === "OnContainerExit" &&
        f.maxAlivePeriod === undefined &&
        current.maxAlivePeriodInSeconds
      )
        lc["maxAlivePeriodInSeconds"] = current.maxAlivePeriodInSeconds;
    }
    properties["dynamicPoolConfiguration"] = { lifecycleConfiguration: lc };
  }
  if (f.networkStatus !== undefined) properties["sessionNetworkConfiguration"] = { status: f.networkStatus };
  if (f.maxSessions !== undefined || f.readySessions !== undefined) {
    properties["scaleConfiguration"] = {
      ...(f.maxSessions === undefined ? {} : { maxConcurrentSessions: f.maxSessions }),
      ...(f.readySessions === undefined ? {} : { readySessionInstances: f.readySessions }),
    };
  }

  // --secrets is the pool's whole list, as in az: secrets it does not name are deleted (`--secrets ""` deletes
  // all). Without it, a registry password is added to the existing secrets, re-sent by name (values kept).
  let secrets: Secret[] | undefined;
  const withExisting = (): Secret[] => {
    secrets ??= (p.secrets ?? []).map((s) => ({ name: s.name }));
    return secrets;
  };
  if (f.secrets !== undefined) {
    secrets = parseSecrets(f.secrets);
    const named = new Set(secrets.map((s) => s.name));
    const dropped = (p.secrets ?? []).map((s) => s.name).filter((n) => !named.has(n));
    if (dropped.length > 0 && secrets.length > 0) {
      ctx.warn(
        `--secrets replaces the pool's secrets: ${dropped.join(", ")} will be deleted. To keep a secret, name it in --secrets with its value.`,
      );
    }
  }

  const containerChange = given(f, CONTAINER_FLAGS).length > 0;
  const registryChange = given(f, REGISTRY_FLAGS).length > 0;
  if (containerChange || registryChange || f.targetPort !== undefined) {
    if (!custom || !p.customContainerTemplate) {
      const flags = [...given(f, CONTAINER_FLAGS), ...given(f, REGISTRY_FLAGS)];
      if (f.targetPort !== undefined) flags.push("--target-port");
      throw new UsageError(
        `${flags.join(", ")} ${flags.length === 1 ? "applies" : "apply"} only to CustomContainer pools; ${ctx.name} is ${containerType}.`,
      );
    }
    const template = structuredClone(p.customContainerTemplate);
    if (containerChange) updateContainer(template, f);
    if (f.targetPort !== undefined) template.ingress = { ...template.ingress, targetPort: f.targetPort };
    if (registryChange) {
      const existingRc = template.registryCredentials;
      checkRegistryFlags(f, existingRc?.server);
      if (!existingRc) {
        if (
          f.registryServer === undefined ||
          (f.registryIdentity === undefined &&
            (f.registryUsername === undefined || f.registryPassword === undefined))
        ) {
          throw new UsageError(
            "the pool has no registry credentials yet: give --registry-server with --registry-username and --registry-password, or with --registry-identity.",
          );
        }
      }
      const rc = { ...existingRc };
      if (f.registryServer !== undefined) rc.server = f.registryServer;
      if (f.registryUsername !== undefined) rc.username = f.registryUsername;
      if (f.registryIdentity !== undefined) rc.identity = f.registryIdentity;
      if (f.registryPassword !== undefined) {
        if (!rc.username) throw new UsageError("--registry-password needs --registry-username.");
        rc.passwordSecretRef = registrySecretRef(
          withExisting(),
          rc.username,
          rc.server!,
          f.registryPassword,
          ctx.warn,
          true,
        );
      }
      template.registryCredentials = rc;
    }
    properties["customContainerTemplate"] = template;
  }
  if (secrets !== undefined) properties["secrets"] = secrets;

  if (Object.keys(properties).length > 0) body["properties"] = properties;
  // Only --location, naming where the pool already is: nothing to send, and nothing wrong (updatePool skips the PATCH).
  if (Object.keys(body).length === 0 && f.location === undefined) {
    throw new UsageError(
      "nothing to update: give at least one setting to change (e.g. --max-sessions, --ready-sessions, --cooldown-period, --network-status, --secrets, --image, --env-vars). See 'sessionpool update --help'.",
    );
  }
  return body;
}

function sameLocation(a: string, b: string | undefined): boolean {
  const norm = (l: string) => l.replace(/\s+/g, "").toLowerCase();
  return b !== undefined && norm(a) === norm(b);
}

function updateContainer(template: Template, f: PoolFlags): void {
  const containers = template.containers ?? [];
  let container: Container | undefined;
  if (containers.length === 1) container = containers[0];
  else if (f.containerName === undefined) {
    throw new UsageError("the pool has several containers: say which one with --container-name.");
  } else {
    container = containers.find((c) => c.name?.toLowerCase() === f.containerName!.toLowerCase());
    if (!container) throw new UsageError(`the pool has no container named '${f.containerName}'.`);
  }
  if (!container) throw new UsageError("the pool's template has no container to update.");
  if (f.containerName !== undefined) container.name = f.containerName;
  if (f.image !== undefined) container.image = f.image;
  // An emptied list is sent as [] rather than left out: the PATCH replaces the containers, and [] says so plainly.
  if (f.envVars !== undefined) container.env = parseEnvVars(f.envVars);
  if (f.command !== undefined) container.command = parseList(f.command);
  if (f.args !== undefined) container.args = parseList(f.args);
  if (f.cpu !== undefined || f.memory !== undefined) {
    container.resources = {
      ...container.resources,
      ...(f.cpu === undefined ? {} : { cpu: f.cpu }),
      ...(f.memory === undefined ? {} : { memory: f.memory }),
    };
  }
}

function identityFor(f: PoolFlags, ctx: BodyContext, existing: PoolResource["identity"]): Json | undefined {
  if (!f.miSystemAssigned && f.miUserAssigned === undefined && f.registryIdentity === undefined) {
    return undefined;
  }
  const existingType = existing?.type ?? "None";
  let system = f.miSystemAssigned === true || existingType.includes("SystemAssigned");
  const users = new Set((f.miUserAssigned ?? []).map((u) => identityResourceId(u, ctx).toLowerCase()));
  if (f.registryIdentity !== undefined) {
    if (isSystem(f.registryIdentity)) system = true;
    else users.add(identityResourceId(f.registryIdentity, ctx));
  }
  const hasUsers = users.size > 0 || Object.keys(existing?.userAssignedIdentities ?? {}).length > 0;
  const type =
    system && hasUsers ? "SystemAssigned,UserAssigned" : system ? "SystemAssigned" : "UserAssigned";
  if (!system && !hasUsers) return undefined;
  return {
    type,
    ...(users.size > 0 ? { userAssignedIdentities: Object.fromEntries([...users].map((u) => [u, {}])) } : {}),
  };
}

function identitySettings(f: PoolFlags, ctx: BodyContext): Json[] {
  const out: Json[] = [];
  if (f.miSystemAssigned) out.push({ identity: "system", lifecycle: "Main" });
  for (const u of f.miUserAssigned ?? []) {
    out.push({ identity: identityResourceId(u, ctx).toLowerCase(), lifecycle: "Main" });
  }
  return out;
}
