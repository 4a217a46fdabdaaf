// Fastify's type provider for TypeBox schemas: the schema a route declares gives its handler's request types.
// (A few lines instead of @fastify/type-provider-typebox, which targets @sinclair/typebox, not `typebox` 1.x.)
import type { FastifyTypeProvider } from "fastify";
import type { Static, TSchema } from "typebox";

export interface TypeBoxProvider extends FastifyTypeProvider {
  validator: this["schema"] extends TSchema ? Static<this["schema"]> : unknown;
  serializer: this["schema"] extends TSchema ? Static<this["schema"]> : unknown;
}
