// Keys and credentials kept in the data dir: created on first start with mode 0600, read on every start after.
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  writeSync,
} from "node:fs";
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
  // On disk before anything sealed or signed with it is: a key lost to a crash (or a file system that failed
  // before its journal was written) would make every secret and token made with it unreadable.
  const fd = openSync(path, "w", 0o600);
  try {
    writeSync(fd, `${value}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // Its directory entry, and the keys dir's own entry in the data dir, which may be new too.
  for (const dir of [dirname(path), dirname(dirname(path))]) {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  return { value, created: true };
}

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}
