// Sessions of a pool: show, delete, stop (/.management/stopSession) and list (paged with nextLink).
import type { FastifyInstance } from "fastify";
import { SessionNotFoundError, ValidationError } from "../../core/errors.ts";
import { parseEnvironmentRequest } from "../../core/sessions/session-environment.ts";
import type { TypeBoxProvider } from "../type-provider.ts";
import {
  apiVersionOf,
  type DataPlaneContext,
  identifierOf,
  keyOf,
  PREFIX,
  queryOf,
  schemas,
} from "./dataplane-request.ts";
import { sessionToWire, usageToWire } from "./dataplane-wire.ts";
import { withPeerSessions } from "./fleet-forwarding.ts";

const LIST_SESSIONS_PAGE = 100;

export function sessionRoutes(app: FastifyInstance, ctx: DataPlaneContext): void {
  const { sessions } = ctx.o;
  const api = app.withTypeProvider<TypeBoxProvider>();

  // `usage` is a sessionpool extension (Azure's GET /session has none); listSessions leaves it out, since it
  // costs an engine call and an agent request per session.
  api.get(`${PREFIX}/session`, { schema: schemas.session }, async (request) => {
    const live = ctx.existing(request);
    return { ...sessionToWire(live), usage: usageToWire(await sessions.usage(live)) };
  });
  // A sessionpool extension: claim the identifier's session now, personalised with environment variables.
  api.put(`${PREFIX}/session`, { schema: schemas.session }, async (request, reply) => {
    const env = parseEnvironmentRequest(request.body, await sessions.secretNames(keyOf(request)));
    const { live, fresh } = await ctx.claim(request, reply, env);
    return reply.code(fresh ? 201 : 200).send(sessionToWire(live));
  });
  api.delete(`${PREFIX}/session`, { schema: schemas.session }, async (request, reply) => {
    await sessions.stop(keyOf(request), identifierOf(request), "deleted");
    return reply.code(204).send();
  });
  api.post(`${PREFIX}/.management/stopSession`, { schema: schemas.session }, async (request, reply) => {
    const identifier = identifierOf(request);
    if (!(await sessions.stop(keyOf(request), identifier, "stopped")))
      throw new SessionNotFoundError(identifier);
    return reply
      .type("text/plain; charset=utf-8")
      .send(`Session ${identifier} in session pool ${request.params.poolName} stopped.`);
  });
  api.get(`${PREFIX}/listSessions`, { schema: schemas.listSessions }, async (request) => {
    const skipText = queryOf(request, "skip") ?? "0";
    if (!/^\d+$/.test(skipText))
      throw new ValidationError("InvalidSkip", "'skip' must be a whole number.", "skip");
    const skip = Number(skipText);
    let all = sessions
      .list(keyOf(request))
      .sort((a, b) => a.rec.allocatedAt!.localeCompare(b.rec.allocatedAt!))
      .map(sessionToWire);
    // In a fleet, the other servers' sessions of the pool too.
    if (ctx.o.fleet) all = await withPeerSessions(ctx, request, all);
    const page = all.slice(skip, skip + LIST_SESSIONS_PAGE);
    const next = skip + LIST_SESSIONS_PAGE < all.length;
    return {
      sessions: page,
      ...(next
        ? {
            nextLink: `${ctx.endpoint(request)}/listSessions?api-version=${apiVersionOf(request)}&skip=${skip + LIST_SESSIONS_PAGE}`,
          }
        : {}),
    };
  });
}
