// The one place data-plane errors become Azure.Core's envelope: {error:{code,message}} plus x-ms-error-code.
import type { FastifyInstance } from "fastify";
import { SessionPoolError } from "../../errors.ts";
import { InternalError, toCodedError } from "../errors.ts";

export function dataPlaneErrorBody(err: SessionPoolError): { error: Record<string, unknown> } {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.target === undefined ? {} : { target: err.target }),
    },
  };
}

export function installDataPlaneErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler(async (error, request, reply) => {
    // Agent errors are coded already (FileNotFound -> 404, PathOutsideDataDir -> 400, ...).
    let coded = toCodedError(error);
    const e = error as { code?: string };
    if (e.code === "FST_REQ_FILE_TOO_LARGE" || e.code === "FST_PARTS_LIMIT" || e.code === "FST_FILES_LIMIT") {
      coded = new SessionPoolError("FileTooLarge", 413, "The uploaded file is larger than the 128 MB limit.");
    } else if (e.code === "FST_INVALID_MULTIPART_CONTENT_TYPE") {
      coded = new SessionPoolError(
        "InvalidMultipartRequest",
        400,
        "Upload with Content-Type multipart/form-data and a 'file' part.",
      );
    }
    if (!coded) {
      request.log.error({ err: error }, "unexpected error in the data plane");
      coded = new InternalError();
    }
    return reply
      .code(coded.statusCode)
      .headers(coded.headers)
      .header("x-ms-error-code", coded.code)
      .send(dataPlaneErrorBody(coded));
  });
}
