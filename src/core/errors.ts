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
