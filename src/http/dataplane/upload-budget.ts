// Uploads are held in memory until the session's agent has them (its frames carry their length up front). All
// uploads in flight together may hold a fixed budget; one that would pass it is refused with 503 and Retry-After,
// so a burst of large uploads cannot take the server's memory.
import type { FastifyRequest } from "fastify";
import { ServerBusyError, ValidationError } from "../../core/errors.ts";
import { FileTooLargeError, uploadError } from "./dataplane-errors.ts";

export const UPLOAD_LIMIT_BYTES = 128 * 1024 * 1024;
export const DEFAULT_UPLOAD_BUFFER_BYTES = 512 * 1024 * 1024;

/** Bytes held by all requests together, within a fixed capacity. */
export class ByteBudget {
  #used = 0;
  readonly #capacity: number;
  constructor(capacity: number) {
    this.#capacity = capacity;
  }
  take(bytes: number): boolean {
    if (this.#used + bytes > this.#capacity) return false;
    this.#used += bytes;
    return true;
  }
  release(bytes: number): void {
    this.#used -= bytes;
  }
  get used(): number {
    return this.#used;
  }
}

/**
 * The upload's file part, read whole, each chunk counted against the budget of all uploads in flight (`held` says
 * how much this one holds, to be released when it is done). A body the parser cannot read is answered
 * InvalidMultipartRequest.
 */
export async function readFilePart(
  request: FastifyRequest,
  budget: ByteBudget,
  held: { bytes: number },
): Promise<{ filename: string; data: Buffer }> {
  try {
    const part = await request.file();
    if (!part)
      throw new ValidationError("InvalidMultipartRequest", "The request has no 'file' part.", "file");
    const chunks: Buffer[] = [];
    for await (const chunk of part.file as AsyncIterable<Buffer>) {
      if (!budget.take(chunk.length)) {
        throw new ServerBusyError(
          "Too many uploads are in progress on this server right now; retry in a few seconds.",
          5,
          // The rest of the body is not read: the connection cannot carry another request after this answer.
          { connection: "close" },
        );
      }
      held.bytes += chunk.length;
      chunks.push(chunk);
    }
    if (part.file.truncated) throw new FileTooLargeError();
    return { filename: part.filename, data: Buffer.concat(chunks) };
  } catch (err) {
    throw uploadError(err);
  }
}
