// An empty request body is "no body", whatever Content-Type comes with it: az rest, curl with a default header and
// most HTTP wrappers send `Content-Type: application/json` on requests that carry nothing (POST getAuthtoken,
// DELETE of a pool or a session, stopSession). Azure accepts those; Fastify refuses an empty JSON body, and a
// Content-Type it has no parser for, even on an empty body.
import type { FastifyInstance } from "fastify";
import { UnsupportedMediaTypeError } from "./errors.ts";

type Parser = ReturnType<FastifyInstance["getDefaultJsonParser"]>;

const isEmpty = (body: string | Buffer): boolean => body.length === 0;

/**
 * Fastify's JSON parser (prototype poisoning refused) except that an empty body parses to undefined, which
 * routes that need a body refuse by name ("The request body must be a JSON object").
 */
export function emptyTolerantJsonParser(app: FastifyInstance): Parser {
  const json = app.getDefaultJsonParser("error", "error");
  return (request, body, done) => {
    if (isEmpty(body)) {
      done(null, undefined);
      return;
    }
    json(request, body, done);
  };
}

/**
 * Replaces `app`'s application/json parser and adds a catch-all that takes an empty body of any other type as no
 * body (a non-empty one stays 415). Scopes registered after inherit both; a scope's own parsers (multipart,
 * merge-patch) still win for their types.
 */
export function acceptEmptyBodies(app: FastifyInstance): void {
  const parser = emptyTolerantJsonParser(app);
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, parser);
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => {
    if (isEmpty(body)) {
      done(null, undefined);
      return;
    }
    done(new UnsupportedMediaTypeError(), undefined);
  });
}
