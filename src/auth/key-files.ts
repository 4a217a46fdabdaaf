// Keys and credentials kept in the data dir: created on first start with mode 0600, read on every start after.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** Reads `path`, or creates it from `make()` (mode 0600) when absent. Tightens a file left more open. */
export function loadOrCreateSecretFile(
  path: string,
  make: () => string,
): { value: string; created: boolean } {
  try {
    const value = readFileSync(path, "utf8").trim();
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    if (value !== "") return { value, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const value = make();
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: "w" });
  return { value, created: true };
}

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}
