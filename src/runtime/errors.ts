// Errors the runtime layer raises; drivers translate engine answers into these.
import { SessionPoolError } from "../errors.ts";

export class RuntimeUnavailableError extends SessionPoolError {
  static readonly codes = ["RuntimeUnavailable"] as const;

  constructor(message: string, cause?: unknown) {
    super("RuntimeUnavailable", 503, message, { cause });
  }
}

export class ImageNotFoundError extends SessionPoolError {
  static readonly codes = ["ImageNotFound"] as const;

  constructor(ref: string, detail: string, cause?: unknown) {
    super("ImageNotFound", 400, `image '${ref}' could not be found or pulled: ${detail}`, { cause });
  }
}

export class ImagePullAuthError extends SessionPoolError {
  static readonly codes = ["ImagePullUnauthorized"] as const;

  constructor(ref: string, server: string, detail: string, cause?: unknown) {
    super(
      "ImagePullUnauthorized",
      400,
      `the registry '${server}' refused the credentials for '${ref}': ${detail}`,
      {
        cause,
      },
    );
  }
}

export class SandboxCreateError extends SessionPoolError {
  static readonly codes = ["SandboxCreateFailed"] as const;

  constructor(message: string, cause?: unknown) {
    super("SandboxCreateFailed", 500, message, { cause });
  }
}

/** The sandbox runtime asked for cannot be used with this engine (e.g. gVisor not registered as needed). */
export class RuntimeConfigError extends SessionPoolError {
  static readonly codes = ["RuntimeNotConfigured"] as const;

  constructor(message: string) {
    super("RuntimeNotConfigured", 500, message);
  }
}
