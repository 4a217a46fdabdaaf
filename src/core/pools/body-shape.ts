// Schema-driven normalisation of a client's JSON: ARM matches property names and enum values without regard to
// case (clients send `inline`, docs spell `coolDownPeriodInSeconds`), so both are folded to the schema's spelling
// before the shape is checked. Shape errors become ValidationErrors whose target is the property path.
import type { TSchema } from "typebox";
import { Compile } from "typebox/compile";
import { ValidationError } from "../errors.ts";

type JsonSchema = {
  type?: string;
  properties?: Record<string, JsonSchema>;
  patternProperties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  const?: unknown;
};

function enumValues(schema: JsonSchema): string[] | undefined {
  if (!schema.anyOf || schema.anyOf.length === 0) return undefined;
  const values = schema.anyOf.map((s) => s.const);
  return values.every((v) => typeof v === "string") ? (values as string[]) : undefined;
}

/** Returns a copy of `value` with property names and enum values spelled as `schema` spells them. */
export function foldCase(value: unknown, schema: JsonSchema): unknown {
  const choices = enumValues(schema);
  if (choices && typeof value === "string") {
    const wanted = value.replace(/\s+/g, "").toLowerCase();
    return choices.find((c) => c.toLowerCase() === wanted) ?? value;
  }
  if (schema.anyOf) {
    const objectBranch = schema.anyOf.find((s) => s.type === "object");
    return objectBranch && isPlainObject(value) ? foldCase(value, objectBranch) : value;
  }
  if (schema.type === "array" && schema.items && Array.isArray(value)) {
    const items = schema.items;
    return value.map((item) => foldCase(item, items));
  }
  if (schema.type === "object" && isPlainObject(value)) {
    if (!schema.properties) return value;
    const known = new Map(Object.keys(schema.properties).map((k) => [k.toLowerCase(), k]));
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      const canonical = known.get(key.toLowerCase());
      if (canonical === undefined) continue; // ARM ignores properties it does not know
      const childSchema = schema.properties[canonical];
      out[canonical] = childSchema ? foldCase(child, childSchema) : child;
    }
    return out;
  }
  return value;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** "/properties/scaleConfiguration/maxConcurrentSessions" -> "properties.scaleConfiguration.maxConcurrentSessions" */
export function pointerToPath(pointer: string): string {
  return pointer
    .split("/")
    .filter((p) => p !== "")
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join("")
    .replace(/^\./, "");
}

const SECRET_VALUE_PATH = /(^|\.)secrets\[\d+\]\.value$/;

function describe(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    // Too deep to print (a RangeError): say what it is rather than fail the request.
    text = Array.isArray(value) ? "[...]" : "{...}";
  }
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function valueAt(root: unknown, pointer: string): unknown {
  let node = root;
  for (const part of pointer.split("/").filter((p) => p !== "")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

export interface ShapeChecker<T> {
  /** Case-folds, checks and returns the body typed, or throws a ValidationError naming the first bad property. */
  parse(body: unknown, root?: string): T;
}

export function shapeChecker<T>(schema: TSchema): ShapeChecker<T> {
  const compiled = Compile(schema);
  return {
    parse(body: unknown, root = ""): T {
      const folded = foldCase(body, schema as JsonSchema);
      if (compiled.Check(folded)) return folded as T;
      const errors = [...compiled.Errors(folded)];
      // anyOf branches produce one error per branch; the enum error at the same path says it best.
      const first = errors.find((e) => e.keyword !== "const") ?? errors[0];
      if (!first) throw new ValidationError("InvalidRequestContent", "The request content is not valid.");
      const path = [root, pointerToPath(first.instancePath)].filter((p) => p !== "").join(".");
      const where = path === "" ? "The request body" : `'${path}'`;
      const got = valueAt(folded, first.instancePath);
      const sub = errors.filter((e) => e.instancePath === first.instancePath && e.keyword === "const");
      if (sub.length > 0) {
        const allowed = sub
          .map((e) => String((e.params as { allowedValue?: unknown }).allowedValue))
          .join(", ");
        throw new ValidationError(
          "InvalidEnumValue",
          `${where} has the value ${describe(got)}; allowed values are: ${allowed}.`,
          path,
        );
      }
      if (first.keyword === "required") {
        const missing = (first.params as { requiredProperties?: string[] }).requiredProperties?.[0] ?? "";
        const target = [path, missing].filter((p) => p !== "").join(".");
        throw new ValidationError("MissingRequiredProperty", `'${target}' is required.`, target);
      }
      // Secret values are write-only: an error about one must not echo it back (clients log error messages).
      const shown = SECRET_VALUE_PATH.test(path) ? "" : ` (got ${describe(got)})`;
      throw new ValidationError("InvalidPropertyValue", `${where} ${first.message}${shown}.`, path);
    },
  };
}
