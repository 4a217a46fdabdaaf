// Paths inside a session are relative to /mnt/data. Clients send them several ways (`name`, `/mnt/data/name`,
// a `path` query plus a file name); this folds them into one relative path and refuses escapes. The agent
// checks again inside the sandbox, where symlinks are visible.
import { ValidationError } from "../errors.ts";

export const DATA_ROOT = "/mnt/data";

/** Joins an optional directory and a name into a clean path relative to /mnt/data ("" for the root). */
export function sessionPath(directory: string | undefined, name = ""): string {
  const joined = [directory ?? "", name].filter((p) => p !== "").join("/");
  let rel = joined.replace(/\\/g, "/");
  if (rel === DATA_ROOT || rel.startsWith(`${DATA_ROOT}/`)) rel = rel.slice(DATA_ROOT.length);
  else if (rel.startsWith("/")) {
    throw new ValidationError(
      "InvalidFilePath",
      `The path '${joined}' is outside ${DATA_ROOT}; paths are relative to ${DATA_ROOT}.`,
      "path",
    );
  }
  const parts: string[] = [];
  for (const part of rel.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === ".." || part.includes("\0")) {
      throw new ValidationError(
        "InvalidFilePath",
        `The path '${joined}' may not contain '..' or NUL; paths stay inside ${DATA_ROOT}.`,
        "path",
      );
    }
    // Linux's NAME_MAX, in bytes: a longer name is refused here rather than by the file system in the sandbox.
    if (Buffer.byteLength(part) > 255) {
      throw new ValidationError(
        "InvalidFilePath",
        `The name '${part.slice(0, 32)}...' is longer than 255 bytes; file and directory names are at most 255 bytes (UTF-8).`,
        "path",
      );
    }
    parts.push(part);
  }
  const clean = parts.join("/");
  if (clean.length > 4096)
    throw new ValidationError("InvalidFilePath", "The path is longer than 4096 characters.", "path");
  return clean;
}

const TYPES: Record<string, string> = {
  txt: "text/plain",
  csv: "text/csv",
  json: "application/json",
  yaml: "application/yaml",
  yml: "application/yaml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  svg: "image/svg+xml",
  pdf: "application/pdf",
  html: "text/html",
  md: "text/markdown",
  py: "text/x-python",
  js: "text/javascript",
  xml: "application/xml",
  zip: "application/zip",
};

export function contentTypeOf(name: string, isDirectory = false): string {
  if (isDirectory) return "application/octet-stream";
  const ext = name.split(".").pop()?.toLowerCase() ?? "";
  return TYPES[ext] ?? "application/octet-stream";
}
