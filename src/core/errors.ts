// Domain errors: pools, operations and sessions. http/ maps each to its surface's envelope.
import { type ErrorDetail, SessionPoolError } from "../errors.ts";

/** A request body or parameter that breaks a rule; `target` is the property path (ARM's `target`). */
export class ValidationError extends SessionPoolError {
  constructor(code: string, message: string, target?: string, details?: ErrorDetail[]) {
    super(code, 400, message, {
      ...(target === undefined ? {} : { target }),
      ...(details ? { details } : {}),
    });
  }
}

export class PoolNotFoundError extends SessionPoolError {
  constructor(resourceGroup: string, name: string) {
    super(
      "ResourceNotFound",
      404,
      `The Resource 'Microsoft.App/sessionPools/${name}' under resource group '${resourceGroup}' was not found.`,
    );
  }
}

export class OperationNotFoundError extends SessionPoolError {
  constructor(id: string) {
    super("OperationNotFound", 404, `The operation '${id}' was not found.`);
  }
}

export class ConflictError extends SessionPoolError {
  constructor(code: string, message: string) {
    super(code, 409, message);
  }
}

export class PreconditionFailedError extends SessionPoolError {
  constructor(message: string) {
    super("PreconditionFailed", 412, message);
  }
}

/** Data-plane: the pool behind an endpoint does not exist (or is being deleted). */
export class SessionPoolNotFoundError extends SessionPoolError {
  constructor(name: string) {
    super("SessionPoolNotFound", 404, `The session pool '${name}' does not exist.`);
  }
}

/** Data-plane: the pool exists but cannot hand out sessions (provisioning failed, unsupported type, ...). */
export class PoolNotReadyError extends SessionPoolError {
  constructor(name: string, reason: string) {
    super("SessionPoolNotReady", 503, `The session pool '${name}' is not ready: ${reason}`, {
      headers: { "retry-after": "5" },
    });
  }
}

export class SessionLimitError extends SessionPoolError {
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
  constructor(reason: string, retryAfterSeconds: number) {
    super(
      "ServerCapacityReached",
      429,
      `No new session can start now: ${reason}. Retry when sessions end, or ask the operator to raise the limit.`,
      { headers: { "retry-after": String(retryAfterSeconds) } },
    );
  }
}

/** A pool that could never run on this server (its sessions exceed the server-wide sandbox bounds). */
export class PoolExceedsServerCapacityError extends SessionPoolError {
  constructor(reason: string) {
    super("PoolExceedsServerCapacity", 400, `The session pool cannot run on this server: ${reason}.`, {
      target: "properties.scaleConfiguration.maxConcurrentSessions",
    });
  }
}

export class SessionNotFoundError extends SessionPoolError {
  constructor(identifier: string) {
    super("SessionNotFound", 404, `No session with identifier '${identifier}' is running in this pool.`);
  }
}

export class ExecutionNotFoundError extends SessionPoolError {
  constructor(id: string) {
    super("ExecutionNotFound", 404, `No execution with id '${id}' is known for this session.`);
  }
}

export class SessionStartError extends SessionPoolError {
  constructor(message: string, cause?: unknown) {
    super("SessionStartFailed", 503, message, { cause, headers: { "retry-after": "2" } });
  }
}

/** Data-plane: too many executions (or bytes of code) already wait for a session or a pool's sessions. */
export class ExecutionQueueFullError extends SessionPoolError {
  constructor(message: string, retryAfterSeconds: number) {
    super("ExecutionQueueFull", 429, message, { headers: { "retry-after": String(retryAfterSeconds) } });
  }
}
