// docs/errors.md and the code must not drift apart: every code the server can raise is documented, and every
// documented code is raised somewhere (the server's sources or the in-sandbox agent's).
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { ROOT } from "../helpers/server.ts";

function sources(dir: string, ext: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path, ext));
    else if (path.endsWith(ext)) out.push(path);
  }
  return out;
}

/** Codes raised by the server: the first string argument of an error constructor or `fail`, or a `code:` value. */
function raisedCodes(): Set<string> {
  const pattern =
    /(?:super|Error|fail|SessionPoolError)\(\s*"([A-Z][A-Za-z]+)"|\bcode:\s*"([A-Z][A-Za-z]+)"/g;
  const codes = new Set<string>();
  for (const file of sources(join(ROOT, "src"), ".ts")) {
    if (file.includes(`${join("src", "cli")}`)) continue; // the CLI's own exit codes are documented in docs/cli.md
    for (const m of readFileSync(file, "utf8").matchAll(pattern)) codes.add((m[1] ?? m[2])!);
  }
  return codes;
}

function documentedCodes(): Set<string> {
  const doc = readFileSync(join(ROOT, "docs/errors.md"), "utf8");
  return new Set([...doc.matchAll(/^\| `([A-Za-z]+)` \|/gm)].map((m) => m[1]!));
}

it("documents every error code the server raises", () => {
  const missing = [...raisedCodes()].filter((c) => !documentedCodes().has(c));
  assert.deepEqual(missing, [], `add these to docs/errors.md: ${missing.join(", ")}`);
});

it("documents only codes that exist in the server or the agent", () => {
  const everything = [...sources(join(ROOT, "src"), ".ts"), ...sources(join(ROOT, "agents"), ".py")]
    .map((f) => readFileSync(f, "utf8"))
    .join("\n");
  const stale = [...documentedCodes()].filter((c) => !everything.includes(`"${c}"`));
  assert.deepEqual(stale, [], `these documented codes are raised nowhere: ${stale.join(", ")}`);
});
