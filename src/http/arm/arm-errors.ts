// The one place management-API errors become ARM's envelope: {error:{code,message,target,details}}.
import type { FastifyInstance, FastifyReply } from "fastify";
import type { SessionPoolError } from "../../errors.ts";
import { InternalError, sendCodedError, toCodedError } from "../errors.ts";

export function armErrorBody(err: SessionPoolError): { error: Record<string, unknown> } {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.target === undefined ? {} : { target: err.target }),
      details: err.details,
    },
  };
}

export function installArmErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler(async (error, request, reply) => {
    let coded = toCodedError(error);
    if (!coded) {
      request.log.error({ err: error }, "unexpected error in the management API");
      coded = new InternalError();
    }
    if (coded.statusCode >= 500) request.log.warn({ code: coded.code }, coded.message);
    return sendArmError(reply, coded);
  });
}

/** Answers `err` in ARM's envelope, its code in x-ms-error-code, with the headers it implies. */
export function sendArmError(reply: FastifyReply, err: SessionPoolError): FastifyReply {
  return sendCodedError(reply, err, armErrorBody);
}
