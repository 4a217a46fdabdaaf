// Files in a session's /mnt/data: upload (both generations), list, metadata, content and delete.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ValidationError } from "../../core/errors.ts";
import { contentTypeOf, sessionPath } from "../../core/sessions/file-paths.ts";
import { agentOf, type LiveSandbox } from "../../core/sessions/session-manager.ts";
import type { TypeBoxProvider } from "../type-provider.ts";
import {
  apiVersionOf,
  type DataPlaneContext,
  LEGACY_VERSIONS,
  PREFIX,
  queryOf,
  schemas,
} from "./dataplane-request.ts";
import { fileToLegacyWire, fileToWire } from "./dataplane-wire.ts";
import { ByteBudget, DEFAULT_UPLOAD_BUFFER_BYTES, readFilePart } from "./upload-budget.ts";

export function fileRoutes(app: FastifyInstance, ctx: DataPlaneContext): void {
  const uploads = ctx.o.uploads ?? new ByteBudget(DEFAULT_UPLOAD_BUFFER_BYTES);
  const upload = async (request: FastifyRequest, reply: FastifyReply, legacy: boolean) => {
    if (!request.isMultipart()) {
      throw new ValidationError(
        "InvalidMultipartRequest",
        "Upload with Content-Type multipart/form-data and a 'file' part.",
      );
    }
    const held = { bytes: 0 };
    try {
      const { filename, data } = await readFilePart(request, uploads, held);
      const path = sessionPath(queryOf(request, "path"), filename || "upload");
      if (path === "")
        throw new ValidationError("InvalidFilePath", "The uploaded file needs a file name.", "file");
      const { live } = await ctx.acquire(request, reply);
      const file = await agentOf(live).writeFile(path, data);
      return legacy ? { $id: "1", value: [fileToLegacyWire(file, 2)] } : fileToWire(file);
    } finally {
      uploads.release(held.bytes);
    }
  };

  const api = app.withTypeProvider<TypeBoxProvider>();
  api.post(`${PREFIX}/files/upload`, { schema: schemas.files }, async (request, reply) =>
    upload(request, reply, true),
  );
  api.post(`${PREFIX}/files`, { schema: schemas.files }, async (request, reply) =>
    upload(request, reply, false),
  );

  api.get(`${PREFIX}/files`, { schema: schemas.files }, async (request, reply) => {
    const legacy = LEGACY_VERSIONS.has(apiVersionOf(request));
    const recursive = /^(1|true)$/i.test(queryOf(request, "recursive") ?? "");
    const { live } = await ctx.acquire(request, reply);
    const files = await agentOf(live).listFiles(sessionPath(queryOf(request, "path")), recursive);
    if (legacy) {
      const plain = files.filter((f) => f.type === "file");
      return { $id: "1", value: plain.map((f, i) => fileToLegacyWire(f, 2 + 2 * i)) };
    }
    return { value: files.map(fileToWire) };
  });

  const fileRoute = async (request: FastifyRequest<{ Params: { "*": string } }>, reply: FastifyReply) => {
    // The router has percent-decoded the wildcard already (%2F included); decoding again would turn a file
    // named "100%" into a URIError and "a%41" into "aA".
    const rest = request.params["*"].split("/");
    const legacy = LEGACY_VERSIONS.has(apiVersionOf(request));
    const dir = queryOf(request, "path");
    if (request.method === "GET" && rest[0] === "content" && rest.length > 1 && legacy) {
      const { live } = await ctx.acquire(request, reply);
      return sendContent(reply, live, sessionPath(dir, rest.slice(1).join("/")));
    }
    if (request.method === "GET" && rest.length > 1 && rest.at(-1) === "content") {
      const { live } = await ctx.acquire(request, reply);
      return sendContent(reply, live, sessionPath(dir, rest.slice(0, -1).join("/")));
    }
    const path = sessionPath(dir, rest.join("/"));
    if (path === "") throw new ValidationError("InvalidFilePath", "A file name is required.", "name");
    const { live } = await ctx.acquire(request, reply);
    if (request.method === "DELETE") {
      await agentOf(live).deleteFile(path);
      return reply.code(204).send();
    }
    return fileToWire(await agentOf(live).statFile(path));
  };
  api.get(`${PREFIX}/files/*`, { schema: schemas.file }, fileRoute);
  api.delete(`${PREFIX}/files/*`, { schema: schemas.file }, fileRoute);
}

async function sendContent(reply: FastifyReply, live: LiveSandbox, path: string) {
  const { file, data } = await agentOf(live).readFile(path);
  return reply
    .header("content-type", contentTypeOf(file.name))
    .header("content-disposition", `attachment; filename*=UTF-8''${encodeURIComponent(file.name)}`)
    .header("last-modified", new Date(file.modifiedAtMs).toUTCString())
    .send(data);
}
