// Domain errors: pools, operations and sessions. http/ maps each to its surface's envelope.
import { type ErrorDetail, SessionPoolError } from "../errors.ts";

/** Every code a ValidationError may carry (a 400 each; docs/errors.md says when). */
export const VALIDATION_CODES = [
  // Request shape (both surfaces).
  "InvalidRequestContent",
  "InvalidPropertyValue",
  "InvalidEnumValue",
  "MissingRequiredProperty",
  // ARM addressing.
  "InvalidSubscriptionId",
  "InvalidResourceGroupName",
  "InvalidResourceName",
  "InvalidSkipToken",
  // Session pool rules.
  "LocationRequired",
  "ValueOutOfRange",
  "SessionPoolInvalidReadySessionInstances",
  "InvalidLifecycleConfiguration",
  "McpServerNotEnabled",
  "UnsupportedPoolManagementType",
  "InvalidPropertyForContainerType",
  "ContainerImageRequired",
  "TooManyContainers",
  "TargetPortRequired",
  "InvalidContainerName",
  "InvalidCpu",
  "InvalidMemory",
  "InvalidEnvironmentVariable",
  "InvalidProbe",
  "SecretRefNotFound",
  "InvalidSecretName",
  "DuplicateSecretName",
  "SecretValueRequired",
  "InvalidIdentity",
  "InvalidManagedIdentitySetting",
  "InvalidTag",
  "PropertyNotUpdatable",
  "PropertyChangeNotAllowed",
  // Data plane.
  "MissingIdentifier",
  "InvalidIdentifier",
  "DuplicateOperationId",
  "InvalidExecutionRequest",
  "InvalidFilePath",
  "InvalidMultipartRequest",
  "InvalidSkip",
] as const;

export type ValidationCode = (typeof VALIDATION_CODES)[number];

/** A request body or parameter that breaks a rule; `target` is the property path (ARM's `target`). */
export class ValidationError extends SessionPoolError {
  static readonly codes = VALIDATION_CODES;

  constructor(code: ValidationCode, message: string, target?: string, details?: ErrorDetail[]) {
    super(code, 400, message, {
      ...(target === undefined ? {} : { target }),
      ...(details ? { details } : {}),
    });
  }
}

export class PoolNotFoundError extends SessionPoolError {
  static readonly codes = ["ResourceNotFound"] as const;

  constructor(resourceGroup: string, name: string) {
    super(
      "ResourceNotFound",
      404,
      `The Resource 'Microsoft.App/sessionPools/${name}' under resource group '${resourceGroup}' was not found.`,
    );
  }
}

export class OperationNotFoundError extends SessionPoolError {
  static readonly codes = ["OperationNotFound"] as const;

  constructor(id: string) {
    super("OperationNotFound", 404, `The operation '${id}' was not found.`);
  }
}

/** A write to a pool whose deletion is under way. */
export class PoolBeingDeletedError extends SessionPoolError {
  static readonly codes = ["PoolBeingDeleted"] as const;

  constructor(message: string) {
    super("PoolBeingDeleted", 409, message);
  }
}

export class PreconditionFailedError extends SessionPoolError {
  static readonly codes = ["PreconditionFailed"] as const;

  constructor(message: string) {
    super("PreconditionFailed", 412, message);
  }
}

/** Data-plane: the pool behind an endpoint does not exist (or is being deleted). */
export class SessionPoolNotFoundError extends SessionPoolError {
  static readonly codes = ["SessionPoolNotFound"] as const;

  constructor(name: string) {
    super("SessionPoolNotFound", 404, `The session pool '${name}' does not exist.`);
  }
}

/** Data-plane: the pool exists but cannot hand out sessions (provisioning failed, unsupported type, ...). */
export class PoolNotReadyError extends SessionPoolError {
  static readonly codes = ["SessionPoolNotReady"] as const;

  constructor(name: string, reason: string) {
    super("SessionPoolNotReady", 503, `The session pool '${name}' is not ready: ${reason}`, {
      headers: { "retry-after": "5" },
    });
  }
}

export class SessionLimitError extends SessionPoolError {
  static readonly codes = ["SessionLimitReached"] as const;

  constructor(name: string, max: number, retryAfterSeconds: number) {
    super(
      "SessionLimitReached",
      429,
      `The session pool '${name}' already runs its maximum of ${max} concurrent sessions; retry when one ends (stopSession, DELETE /session, or cooldown) or raise scaleConfiguration.maxConcurrentSessions.`,
      { headers: { "retry-after": String(retryAfterSeconds) } },
    );
  }
}

/** The server-wide bound on sandboxes (count or committed memory) is reached, whatever the pool's own limit. */
export class ServerCapacityError extends SessionPoolError {
  static readonly codes = ["ServerCapacityReached"] as const;

  constructor(reason: string, retryAfterSeconds: number) {
    super(
      "ServerCapacityReached",
      429,
      `No new session can start now: ${reason}. Retry when sessions end, or ask the operator to raise the limit.`,
      { headers: { "retry-after": String(retryAfterSeconds) } },
    );
  }
}

/** A pool whose sandboxes the configured sandbox runtime cannot run on this host (refused at PUT when known). */
export class RuntimeUnsupportedError extends SessionPoolError {
  static readonly codes = ["PoolUnsupportedByRuntime"] as const;

  constructor(message: string) {
    super("PoolUnsupportedByRuntime", 400, message);
  }
}

/** A pool that could never run on this server (its sessions exceed the server-wide sandbox bounds). */
export class PoolExceedsServerCapacityError extends SessionPoolError {
  static readonly codes = ["PoolExceedsServerCapacity"] as const;

  constructor(reason: string) {
    super("PoolExceedsServerCapacity", 400, `The session pool cannot run on this server: ${reason}.`, {
      target: "properties.scaleConfiguration.maxConcurrentSessions",
    });
  }
}

export class SessionNotFoundError extends SessionPoolError {
  static readonly codes = ["SessionNotFound"] as const;

  constructor(identifier: string) {
    super("SessionNotFound", 404, `No session with identifier '${identifier}' is running in this pool.`);
  }
}

/**
 * A fleet: a request forwarded by another server for a session that moved (or ended and started elsewhere) while it
 * was under way. Forwarded requests are never sent on (no loops); the client retries and reaches the session.
 */
export class SessionMovedError extends SessionPoolError {
  static readonly codes = ["SessionMoved"] as const;

  constructor(identifier: string) {
    super(
      "SessionMoved",
      503,
      `The session '${identifier}' moved to another server of the fleet while this request was forwarded; retry it.`,
      { headers: { "retry-after": "1" } },
    );
  }
}

/** `PUT /session` for an identifier whose session runs with other environment variables than those asked for. */
export class SessionEnvironmentConflictError extends SessionPoolError {
  static readonly codes = ["SessionEnvironmentConflict"] as const;

  constructor(identifier: string) {
    super(
      "SessionEnvironmentConflict",
      409,
      `The session '${identifier}' already runs with other environment variables; stop it first, or use another identifier.`,
    );
  }
}

export class ExecutionNotFoundError extends SessionPoolError {
  static readonly codes = ["ExecutionNotFound"] as const;

  constructor(id: string) {
    super("ExecutionNotFound", 404, `No execution with id '${id}' is known for this session.`);
  }
}

export class SessionStartError extends SessionPoolError {
  static readonly codes = ["SessionStartFailed"] as const;

  constructor(message: string, cause?: unknown) {
    super("SessionStartFailed", 503, message, { cause, headers: { "retry-after": "2" } });
  }
}

/** Data-plane: too many executions (or bytes of code) already wait for a session or a pool's sessions. */
export class ExecutionQueueFullError extends SessionPoolError {
  static readonly codes = ["ExecutionQueueFull"] as const;

  constructor(message: string, retryAfterSeconds: number) {
    super("ExecutionQueueFull", 429, message, { headers: { "retry-after": String(retryAfterSeconds) } });
  }
}

/**
 * What waits on the whole server (uploads held in memory, executions' code) would pass the server's bound;
 * `headers` adds to Retry-After (an upload that is not read to its end also closes the connection).
 */
export class ServerBusyError extends SessionPoolError {
  static readonly codes = ["ServerBusy"] as const;

  constructor(message: string, retryAfterSeconds: number, headers: Record<string, string> = {}) {
    super("ServerBusy", 503, message, { headers: { "retry-after": String(retryAfterSeconds), ...headers } });
  }
}

/** A code-interpreter operation on a custom container session (its traffic is proxied; it has no interpreter). */
export class DynamicApisNotAllowedError extends SessionPoolError {
  static readonly codes = ["DynamicApisNotAllowed"] as const;

  constructor() {
    super(
      "DynamicApisNotAllowed",
      400,
      "This is a custom container session: its requests are proxied to the container, it has no code interpreter.",
    );
  }
}

/** The built-in sandbox image is not in the engine: an operator has to build it. */
export class SandboxImageMissingError extends SessionPoolError {
  static readonly codes = ["SandboxImageMissing"] as const;

  constructor(ref: string) {
    super(
      "SandboxImageMissing",
      503,
      `The sandbox image '${ref}' is not present in the Docker engine; build it with 'bash scripts/build-images.sh' (run by 'bash scripts/setup.sh').`,
    );
  }
}
