// docs/errors.md and the code must not drift apart. The catalogue is read from the error classes themselves:
// every coded error class (a SessionPoolError subclass exported from src/) declares the codes it can carry in a
// static `codes`; each must be documented, and each documented code must belong to a class or to one of the
// outcome lists (execution and operation results, which are answers rather than errors).
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { it } from "node:test";
import { pathToFileURL } from "node:url";
import { OPERATION_FAILURE_CODES } from "../../src/core/pools/pool-service.ts";
import { EXECUTION_FAILURE_CODES } from "../../src/core/sessions/executions.ts";
import { SessionPoolError } from "../../src/errors.ts";
import { ROOT } from "../helpers/server.ts";

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (path.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** The CLI's errors are exit statuses, documented in docs/cli.md; everything else in src/ is the server's. */
const serverSources = () =>
  sources(join(ROOT, "src")).filter((f) => !relative(ROOT, f).startsWith("src/cli/"));

type CodedClass = (abstract new (...args: never[]) => SessionPoolError) & { codes?: readonly string[] };

const isErrorsModule = (file: string) => /(^|[/-])errors\.ts$/.test(file);

/** Every SessionPoolError subclass exported anywhere in the server's sources, by "file: Class". */
async function errorClasses(): Promise<Map<string, CodedClass>> {
  const classes = new Map<string, CodedClass>();
  for (const file of serverSources()) {
    const exports = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(exports)) {
      if (typeof value === "function" && value.prototype instanceof SessionPoolError) {
        classes.set(`${relative(ROOT, file)}: ${name}`, value as CodedClass);
      }
    }
  }
  return classes;
}

function documentedCodes(): Set<string> {
  const doc = readFileSync(join(ROOT, "docs/errors.md"), "utf8");
  return new Set([...doc.matchAll(/^\| `([A-Za-z]+)` \|/gm)].map((m) => m[1]!));
}

/**
 * The codes a class carries: its static `codes`; for a class outside an errors module that has none (being moved
 * there), the code of an instance built with placeholder arguments.
 */
function codesOf(cls: CodedClass): readonly string[] {
  if (cls.codes) return cls.codes;
  const Concrete = cls as unknown as new (...args: string[]) => SessionPoolError;
  return [new Concrete("placeholder", "placeholder", "placeholder").code];
}

it("every error class in an errors module declares the codes it carries", async () => {
  const undeclared = [...(await errorClasses())]
    .filter(([where]) => isErrorsModule(where.split(":")[0]!))
    .filter(([, cls]) => !Array.isArray(cls.codes) || cls.codes.length === 0)
    .map(([where]) => where);
  assert.deepEqual(undeclared, [], `give these classes a static 'codes': ${undeclared.join(", ")}`);
});

it("documents every code an error class carries", async () => {
  const documented = documentedCodes();
  const missing = [...(await errorClasses())].flatMap(([where, cls]) =>
    codesOf(cls)
      .filter((c) => !documented.has(c))
      .map((c) => `${c} (${where})`),
  );
  assert.deepEqual(missing, [], `add these to docs/errors.md: ${missing.join(", ")}`);
});

it("documents only codes the server can answer", async () => {
  const known = new Set<string>([...OPERATION_FAILURE_CODES, ...EXECUTION_FAILURE_CODES]);
  for (const cls of (await errorClasses()).values()) for (const c of codesOf(cls)) known.add(c);
  const stale = [...documentedCodes()].filter((c) => !known.has(c));
  assert.deepEqual(
    stale,
    [],
    `these documented codes belong to no error class or outcome list: ${stale.join(", ")}`,
  );
});

it("defines and builds coded errors in the errors modules only", () => {
  const pending = new Set<string>();
  const outside = serverSources()
    .map((f) => relative(ROOT, f))
    .filter((f) => f !== "src/errors.ts" && !isErrorsModule(f) && !pending.has(f))
    .filter((f) =>
      /new SessionPoolError\(|extends SessionPoolError\b/.test(readFileSync(join(ROOT, f), "utf8")),
    );
  assert.deepEqual(
    outside,
    [],
    `move these errors into a class in their layer's errors.ts: ${outside.join(", ")}`,
  );
});
