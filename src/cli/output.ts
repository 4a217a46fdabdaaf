// Turns a command's result into what it prints: --query (JMESPath) first, then --output json, jsonc, table,
// tsv, yaml or none, with az's conventions (sorted keys, tsv rows of sorted values, table columns of scalars).
import { UsageError } from "./errors.ts";

export const OUTPUT_FORMATS = ["json", "jsonc", "table", "tsv", "yaml", "none"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export type Row = Record<string, unknown>;

export interface CommandResult {
  value: unknown;
  /** Readable columns for -o table (skipped when --query reshapes the result, as az does). */
  table?: (value: unknown) => Row[];
  /** Printed as-is when the user asked for no particular format (a token, a file's bytes, a message). */
  raw?: string | Buffer;
}

export interface OutputSettings {
  format: OutputFormat;
  /** -o was given (or configured): a raw result is then formatted like any other. */
  explicit: boolean;
  query?: string;
}

export async function render(result: CommandResult, s: OutputSettings): Promise<string | Buffer> {
  if (result.raw !== undefined && !s.explicit && s.query === undefined) return result.raw;
  let value = result.value;
  if (s.query !== undefined) value = await applyQuery(value, s.query);
  if (value === undefined) return "";
  switch (s.format) {
    case "none":
      return "";
    case "json":
      return `${JSON.stringify(sortKeys(value), null, 2)}\n`;
    case "jsonc":
      return `${colorJson(sortKeys(value), 0)}\n`;
    case "yaml": {
      const { stringify } = await import("yaml");
      return stringify(sortKeys(value));
    }
    case "tsv":
      return tsv(value);
    case "table": {
      const rows = result.table && s.query === undefined ? result.table(value) : autoRows(value);
      return table(rows);
    }
  }
}

export async function applyQuery(value: unknown, query: string): Promise<unknown> {
  const { search } = await import("@jmespath-community/jmespath");
  try {
    return search(JSON.parse(JSON.stringify(value ?? null)), query);
  } catch (err) {
    throw new UsageError(`--query: ${(err as Error).message} in '${query}'.`);
  }
}

export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (isObject(value)) {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys(value[k])]),
    );
  }
  return value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

// ---- tsv: one line per item; an object's values in key order; nested objects empty, lists as their length ----

export function tsv(value: unknown): string {
  const items = Array.isArray(value) ? value : [value];
  return items.map((item) => `${tsvRow(item)}\n`).join("");
}

function tsvRow(item: unknown): string {
  if (Array.isArray(item)) return item.map(tsvCell).join("\t");
  if (isObject(item)) {
    return Object.keys(item)
      .sort()
      .map((k) => tsvCell(item[k]))
      .join("\t");
  }
  return tsvCell(item);
}

function tsvCell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return String(v.length);
  if (isObject(v)) return "";
  return String(v);
}

// ---- table ----

/** az's automatic table: top-level scalar fields of each item, headers with a capital first letter. */
export function autoRows(value: unknown): Row[] {
  const items = Array.isArray(value) ? value : [value];
  return items.map((item) => {
    if (!isObject(item)) return { Result: item };
    const row: Row = {};
    for (const [k, v] of Object.entries(item)) {
      if (v === null || typeof v !== "object") row[k.charAt(0).toUpperCase() + k.slice(1)] = v;
    }
    return row;
  });
}

export function table(rows: Row[]): string {
  if (rows.length === 0) return "";
  const columns: string[] = [];
  for (const row of rows) for (const k of Object.keys(row)) if (!columns.includes(k)) columns.push(k);
  if (columns.length === 0) return "";
  const cells = rows.map((row) => columns.map((c) => cellText(row[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(columns), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)]
    .map((l) => `${l}\n`)
    .join("");
}

function cellText(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  // One cell, one line: a multi-line stdout shows its line breaks as \n.
  return String(v).replace(/\r?\n/g, "\\n");
}

// ---- jsonc: JSON with colours ----

const COLOR = { key: "\x1b[94m", string: "\x1b[32m", literal: "\x1b[33m", reset: "\x1b[0m" };

function colorJson(value: unknown, depth: number): string {
  const pad = "  ".repeat(depth + 1);
  const end = "  ".repeat(depth);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[\n${value.map((v) => pad + colorJson(v, depth + 1)).join(",\n")}\n${end}]`;
  }
  if (isObject(value)) {
    const keys = Object.keys(value);
    if (keys.length === 0) return "{}";
    const items = keys.map(
      (k) => `${pad}${COLOR.key}${JSON.stringify(k)}${COLOR.reset}: ${colorJson(value[k], depth + 1)}`,
    );
    return `{\n${items.join(",\n")}\n${end}}`;
  }
  if (typeof value === "string") return `${COLOR.string}${JSON.stringify(value)}${COLOR.reset}`;
  return `${COLOR.literal}${JSON.stringify(value) ?? "null"}${COLOR.reset}`;
}
