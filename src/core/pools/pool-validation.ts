// The rules a canonical pool must satisfy beyond its JSON shape: ranges, cross-field consistency, references to
// secrets. Each failure names the property (ARM `target`) and what would be accepted.
import { type ValidationCode, ValidationError } from "../errors.ts";
import type { PoolDoc, SessionContainer } from "./pool-doc.ts";
import type { PoolRules, SecretInput } from "./pool-spec.ts";

export const POOL_NAME_PATTERN = /^[a-z][a-z0-9]*$/;
export const SECRET_NAME_PATTERN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const ENV_NAME_PATTERN = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const CONTAINER_NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const MEMORY_PATTERN = /^(\d+(?:\.\d+)?)\s*(gi|g|mi|m)b?$/i;
const USER_ASSIGNED_ID =
  /^\/subscriptions\/[^/]+\/resourcegroups\/[^/]+\/providers\/microsoft\.managedidentity\/userassignedidentities\/[^/]+$/i;

export const COOLDOWN_RANGE = { min: 300, max: 3600 };
export const MAX_ALIVE_RANGE = { min: 300, max: 86400 };
export const CPU_RANGE = { min: 0.25, max: 2 };
export const MEMORY_GI_RANGE = { min: 0.5, max: 4 };

export function validatePoolName(name: string): void {
  if (name.length < 3 || name.length > 63 || !POOL_NAME_PATTERN.test(name)) {
    throw new ValidationError(
      "InvalidResourceName",
      `The session pool name '${name}' is invalid: use 3 to 63 characters, a lowercase letter first, then lowercase letters and digits (^[a-z][a-z0-9]*$).`,
      "name",
    );
  }
}

function fail(code: ValidationCode, target: string, message: string): never {
  throw new ValidationError(code, message, target);
}

function range(
  target: string,
  value: number,
  r: { min: number; max: number },
  code: ValidationCode = "ValueOutOfRange",
): void {
  if (!Number.isFinite(value) || value < r.min || value > r.max) {
    fail(code, target, `'${target}' is ${value}; it must be between ${r.min} and ${r.max}.`);
  }
}

/** "0.5Gi" -> 0.5, "512Mi" -> 0.5; undefined when the text is not a memory quantity. */
export function memoryToGi(text: string): number | undefined {
  const m = MEMORY_PATTERN.exec(text.trim());
  if (!m) return undefined;
  const amount = Number(m[1]);
  const unit = m[2]!.toLowerCase();
  return unit.startsWith("g") ? amount : amount / 1024;
}

export function validatePool(
  doc: PoolDoc,
  ctx: { rules: PoolRules; secrets: SecretInput[]; secretNames: Set<string> },
): void {
  const p = doc.properties;
  const type = p.containerType;
  const custom = type === "CustomContainer";

  if (p.poolManagementType !== "Dynamic") {
    fail(
      "UnsupportedPoolManagementType",
      "properties.poolManagementType",
      `'properties.poolManagementType' is '${p.poolManagementType}'; only 'Dynamic' session pools are supported.`,
    );
  }

  const scale = p.scaleConfiguration;
  range("properties.scaleConfiguration.maxConcurrentSessions", scale.maxConcurrentSessions, {
    min: 1,
    max: ctx.rules.maxSessionsCap,
  });
  if (scale.readySessionInstances < 0) {
    fail(
      "SessionPoolInvalidReadySessionInstances",
      "properties.scaleConfiguration.readySessionInstances",
      `'properties.scaleConfiguration.readySessionInstances' is ${scale.readySessionInstances}; it must be 0 or more.`,
    );
  }
  if (
    custom &&
    (scale.readySessionInstances < 1 || scale.readySessionInstances >= scale.maxConcurrentSessions)
  ) {
    // Azure's rule for custom container pools: at least one warm session, and room for one more than the warm.
    fail(
      "SessionPoolInvalidReadySessionInstances",
      "properties.scaleConfiguration.readySessionInstances",
      `'properties.scaleConfiguration.readySessionInstances' (${scale.readySessionInstances}) of a CustomContainer pool must be greater than 0 and smaller than maxConcurrentSessions (${scale.maxConcurrentSessions}).`,
    );
  }
  if (scale.readySessionInstances > scale.maxConcurrentSessions) {
    fail(
      "SessionPoolInvalidReadySessionInstances",
      "properties.scaleConfiguration.readySessionInstances",
      `'properties.scaleConfiguration.readySessionInstances' (${scale.readySessionInstances}) must not exceed maxConcurrentSessions (${scale.maxConcurrentSessions}).`,
    );
  }

  const lc = p.dynamicPoolConfiguration.lifecycleConfiguration;
  const lcPath = "properties.dynamicPoolConfiguration.lifecycleConfiguration";
  if (lc.lifecycleType === "Timed") {
    range(`${lcPath}.cooldownPeriodInSeconds`, lc.cooldownPeriodInSeconds ?? 0, COOLDOWN_RANGE);
    // Under Timed, maxAlivePeriodInSeconds caps a session's whole life (Azure returns it on Timed pools, so a
    // client that PUTs back what it read sends it).
    if (lc.maxAlivePeriodInSeconds !== undefined) {
      range(`${lcPath}.maxAlivePeriodInSeconds`, lc.maxAlivePeriodInSeconds, MAX_ALIVE_RANGE);
    }
  } else {
    if (!custom) {
      fail(
        "InvalidLifecycleConfiguration",
        `${lcPath}.lifecycleType`,
        `'${lcPath}.lifecycleType' 'OnContainerExit' is only for CustomContainer pools; ${type} pools use 'Timed'.`,
      );
    }
    if (lc.cooldownPeriodInSeconds !== undefined) {
      fail(
        "InvalidLifecycleConfiguration",
        `${lcPath}.cooldownPeriodInSeconds`,
        `'${lcPath}.cooldownPeriodInSeconds' applies only to lifecycleType 'Timed'; an 'OnContainerExit' pool uses maxAlivePeriodInSeconds.`,
      );
    }
    range(`${lcPath}.maxAlivePeriodInSeconds`, lc.maxAlivePeriodInSeconds ?? 0, MAX_ALIVE_RANGE);
  }

  validateSecrets(ctx.secrets, ctx.secretNames);
  const secretNames = new Set(ctx.secrets.map((s) => s.name));

  const t = p.customContainerTemplate;
  if (custom) {
    if (!t || t.containers.length === 0) {
      fail(
        "ContainerImageRequired",
        "properties.customContainerTemplate.containers",
        "A CustomContainer pool needs 'properties.customContainerTemplate.containers' with at least one container and its image.",
      );
    }
    if (t.containers.length > 1) {
      fail(
        "TooManyContainers",
        "properties.customContainerTemplate.containers",
        `'properties.customContainerTemplate.containers' has ${t.containers.length} containers; a session runs exactly one.`,
      );
    }
    for (const [i, c] of t.containers.entries()) {
      validateContainer(c, `properties.customContainerTemplate.containers[${i}]`, secretNames);
    }
    if (!t.ingress.targetPort) {
      fail(
        "TargetPortRequired",
        "properties.customContainerTemplate.ingress.targetPort",
        "A CustomContainer pool needs 'properties.customContainerTemplate.ingress.targetPort' (1-65535): the port its container serves HTTP on.",
      );
    }
    const rc = t.registryCredentials;
    if (rc) {
      const rcPath = "properties.customContainerTemplate.registryCredentials";
      if (!rc.server)
        fail(
          "MissingRequiredProperty",
          `${rcPath}.server`,
          `'${rcPath}.server' is required with registry credentials.`,
        );
      if (rc.passwordSecretRef !== undefined && !secretNames.has(rc.passwordSecretRef)) {
        fail(
          "SecretRefNotFound",
          `${rcPath}.passwordSecretRef`,
          `'${rcPath}.passwordSecretRef' names '${rc.passwordSecretRef}', which is not a secret of this pool (secrets: ${[...secretNames].join(", ") || "none"}).`,
        );
      }
      if (rc.passwordSecretRef !== undefined && !rc.username) {
        fail(
          "MissingRequiredProperty",
          `${rcPath}.username`,
          `'${rcPath}.username' is required with passwordSecretRef.`,
        );
      }
    }
  } else if (t) {
    fail(
      "InvalidPropertyForContainerType",
      "properties.customContainerTemplate",
      `'properties.customContainerTemplate' is only for CustomContainer pools; this pool's containerType is ${type}.`,
    );
  }

  if (custom && p.mcpServerSettings?.isMcpServerEnabled === true) {
    // The MCP tools run in the session's agent, which a custom container does not have; and every path of a
    // custom container's endpoint, /mcp included, belongs to the container.
    fail(
      "InvalidPropertyForContainerType",
      "properties.mcpServerSettings.isMcpServerEnabled",
      "'properties.mcpServerSettings.isMcpServerEnabled' cannot be true for a CustomContainer pool: the MCP tools run in sessionpool's own session images (PythonLTS, NodeLTS, Shell), and a custom container's endpoint forwards every path, /mcp included, to the container.",
    );
  }

  validateIdentity(doc);

  const tags = Object.entries(doc.tags);
  if (tags.length > 50)
    fail("InvalidTag", "tags", `A resource can have at most 50 tags; this one has ${tags.length}.`);
  for (const [k, v] of tags) {
    if (k.length === 0 || k.length > 512 || /[<>%&\\?/]/.test(k)) {
      fail("InvalidTag", "tags", `The tag name '${k}' is invalid: 1-512 characters, none of < > % & \\ ? /.`);
    }
    if (v.length > 256)
      fail("InvalidTag", `tags.${k}`, `The value of tag '${k}' is longer than 256 characters.`);
  }
}

function validateSecrets(secrets: SecretInput[], stored: Set<string>): void {
  const seen = new Set<string>();
  secrets.forEach((s, i) => {
    const target = `properties.secrets[${i}].name`;
    if (!SECRET_NAME_PATTERN.test(s.name)) {
      fail(
        "InvalidSecretName",
        target,
        `The secret name '${s.name}' is invalid: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters).`,
      );
    }
    if (seen.has(s.name))
      fail("DuplicateSecretName", target, `The secret name '${s.name}' appears more than once.`);
    seen.add(s.name);
    if (s.value === undefined && !stored.has(s.name)) {
      fail(
        "SecretValueRequired",
        `properties.secrets[${i}].value`,
        `The secret '${s.name}' has no value; a new secret needs one (values are write-only: an existing secret sent without a value keeps its value).`,
      );
    }
  });
}

function validateContainer(c: SessionContainer, path: string, secretNames: Set<string>): void {
  if (!c.image || c.image.trim() === "") {
    fail(
      "ContainerImageRequired",
      `${path}.image`,
      `'${path}.image' is required for a CustomContainer pool.`,
    );
  }
  if (!CONTAINER_NAME_PATTERN.test(c.name)) {
    fail(
      "InvalidContainerName",
      `${path}.name`,
      `'${path}.name' '${c.name}' is invalid: lowercase letters, digits and '-', at most 63 characters.`,
    );
  }
  if (c.resources?.cpu !== undefined)
    range(`${path}.resources.cpu`, c.resources.cpu, CPU_RANGE, "InvalidCpu");
  if (c.resources?.memory !== undefined) {
    const gi = memoryToGi(c.resources.memory);
    if (gi === undefined) {
      fail(
        "InvalidMemory",
        `${path}.resources.memory`,
        `'${path}.resources.memory' '${c.resources.memory}' is not a memory quantity; use e.g. '0.5Gi', '1Gi' or '512Mi'.`,
      );
    }
    range(`${path}.resources.memory`, gi, MEMORY_GI_RANGE, "InvalidMemory");
  }
  (c.env ?? []).forEach((e, i) => {
    const target = `${path}.env[${i}]`;
    if (!ENV_NAME_PATTERN.test(e.name)) {
      fail(
        "InvalidEnvironmentVariable",
        `${target}.name`,
        `The environment variable name '${e.name}' is invalid.`,
      );
    }
    if ((e.value === undefined) === (e.secretRef === undefined)) {
      fail(
        "InvalidEnvironmentVariable",
        target,
        `The environment variable '${e.name}' needs exactly one of 'value' and 'secretRef'.`,
      );
    }
    if (e.secretRef !== undefined && !secretNames.has(e.secretRef)) {
      fail(
        "SecretRefNotFound",
        `${target}.secretRef`,
        `'${target}.secretRef' names '${e.secretRef}', which is not a secret of this pool (secrets: ${[...secretNames].join(", ") || "none"}).`,
      );
    }
  });
  const probeTypes = new Set<string>();
  (c.probes ?? []).forEach((probe, i) => {
    const target = `${path}.probes[${i}]`;
    if (probeTypes.has(probe.type))
      fail("InvalidProbe", `${target}.type`, `Only one ${probe.type} probe is allowed.`);
    probeTypes.add(probe.type);
    if ((probe.httpGet === undefined) === (probe.tcpSocket === undefined)) {
      fail("InvalidProbe", target, `A probe needs exactly one of 'httpGet' and 'tcpSocket'.`);
    }
  });
}

function validateIdentity(doc: PoolDoc): void {
  const id = doc.identity;
  for (const key of Object.keys(id?.userAssignedIdentities ?? {})) {
    if (!USER_ASSIGNED_ID.test(key)) {
      fail(
        "InvalidIdentity",
        "identity.userAssignedIdentities",
        `'${key}' is not a user-assigned identity resource id (/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}).`,
      );
    }
  }
  if (id?.type.includes("UserAssigned") && Object.keys(id.userAssignedIdentities ?? {}).length === 0) {
    fail(
      "InvalidIdentity",
      "identity.userAssignedIdentities",
      "identity type 'UserAssigned' needs at least one entry in 'userAssignedIdentities'.",
    );
  }
  (doc.properties.managedIdentitySettings ?? []).forEach((m, i) => {
    const target = `properties.managedIdentitySettings[${i}].identity`;
    if (m.identity.toLowerCase() === "system") {
      if (!id?.type.includes("SystemAssigned")) {
        fail(
          "InvalidManagedIdentitySetting",
          target,
          `'${target}' is 'system' but the pool has no system-assigned identity (identity.type).`,
        );
      }
    } else if (
      !Object.keys(id?.userAssignedIdentities ?? {}).some((k) => k.toLowerCase() === m.identity.toLowerCase())
    ) {
      fail(
        "InvalidManagedIdentitySetting",
        target,
        `'${target}' '${m.identity}' is not one of the pool's user-assigned identities.`,
      );
    }
  });
}
