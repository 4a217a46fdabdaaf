// The sessionpool Node.js kernel: runs one cell at a time for agent.py, like a Jupyter JavaScript kernel.
//
// Started by agent.py as `node node_kernel.js CTRL_IN_FD CTRL_OUT_FD DATA_DIR` in its own session (process
// group), exactly like kernel.py and speaking the same control protocol: the control pipes carry one JSON
// object per line, `{"code": ...}` in; out, `{"type": "ready", "pid": ...}` once, then one `{"type": "done",
// "result", "images", "error"}` per cell. fds 1 and 2 are pipes the agent reads all the time; everything the
// cell prints is written to them synchronously, so it is all there before "done" is sent.
//
// Cells run in one persistent `vm` context. Top-level `let`/`const`/`class` declarations are turned into
// `var`s before running (so that a cell can be run again: V8 refuses to redeclare a script-scope lexical
// binding), and the script's completion value is the result. Code with top-level `await` runs in an async
// function, its declarations turned into assignments to globals and its last expression returned. SIGINT (the
// agent's timeout) interrupts a running synchronous loop (`breakOnSigint`) or an awaited promise; the context
// is kept.
//
// Plain CommonJS, no dependencies: runs on Debian bookworm's Node.js 18 and on newer ones.
"use strict";

const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const util = require("node:util");
const vm = require("node:vm");
const { Console } = require("node:console");
const Module = require("node:module");
const { Writable } = require("node:stream");

const KERNEL_FILE = __filename;
const SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));

// --- output ------------------------------------------------------------------------------------------------

/** Writes all of `data` to `fd`, waiting out EAGAIN (a non-blocking pipe that is full). */
function writeAll(fd, data) {
  const buffer = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(fd, buffer, offset, buffer.length - offset);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      Atomics.wait(SLEEP_CELL, 0, 0, 1);
    }
  }
}

function writeQuietly(fd, data) {
  try {
    writeAll(fd, data);
  } catch {
    // the agent is gone; the kernel notices on its control pipe
  }
}

function toBuffer(chunk, encoding) {
  if (typeof chunk === "string") return Buffer.from(chunk, Buffer.isEncoding(encoding) ? encoding : "utf8");
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk));
}

/**
 * A process.stdout/stderr that writes synchronously to fd 1/2, never making the shared pipe non-blocking.
 * `write` is replaced, not only `_write`: it keeps no state that an interrupt (a SIGINT in mid-write)
 * could leave half-updated for ever, and it goes on writing after `end()`, which must not outlive its cell.
 */
function syncStream(fd) {
  const stream = new Writable({
    write(chunk, encoding, callback) {
      writeQuietly(fd, toBuffer(chunk, encoding));
      callback();
    },
  });
  stream.write = function write(chunk, encoding, callback) {
    const done = typeof encoding === "function" ? encoding : callback;
    writeQuietly(fd, toBuffer(chunk, typeof encoding === "string" ? encoding : undefined));
    if (typeof done === "function") process.nextTick(done, null);
    return true;
  };
  stream.fd = fd;
  stream.isTTY = false;
  stream._isStdio = true;
  stream.destroySoon = stream.destroy;
  stream.columns = undefined;
  return stream;
}

const stdout = syncStream(1);
const stderr = syncStream(2);

function writeStderr(text) {
  writeQuietly(2, text);
}

// --- the context -------------------------------------------------------------------------------------------

function createSessionContext(dataDir) {
  const context = vm.createContext({}, { name: "sessionpool" });
  const sessionGlobal = vm.runInContext("globalThis", context);
  // Node's own globals that a fresh context lacks: process, Buffer, timers, URL, TextEncoder, fetch, ...
  for (const name of Object.getOwnPropertyNames(globalThis)) {
    if (name in sessionGlobal || name === "global") continue;
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, name);
    if ("value" in descriptor) {
      Object.defineProperty(sessionGlobal, name, descriptor);
    } else {
      // A lazy getter of the main context (e.g. `crypto`): read through, assignable from the session.
      Object.defineProperty(sessionGlobal, name, {
        configurable: true,
        enumerable: descriptor.enumerable,
        get: () => globalThis[name],
        set: (value) => {
          Object.defineProperty(sessionGlobal, name, {
            value,
            writable: true,
            configurable: true,
            enumerable: true,
          });
        },
      });
    }
  }
  const cellRequire = Module.createRequire(path.join(dataDir, "[sessionpool-cell]"));
  const cellModule = {
    exports: {},
    id: ".",
    filename: path.join(dataDir, "[sessionpool-cell]"),
    loaded: true,
  };
  cellModule.require = cellRequire;
  Object.assign(sessionGlobal, {
    global: sessionGlobal,
    console: new Console({ stdout, stderr, colorMode: false }),
    require: cellRequire,
    module: cellModule,
    exports: cellModule.exports,
    __dirname: dataDir,
    __filename: cellModule.filename,
  });
  return context;
}

// --- making cells re-runnable ------------------------------------------------------------------------------
// A small scanner, enough to find the top-level statements of a cell: strings, templates, comments, regular
// expression literals and brackets are understood; statement ends follow JavaScript's rules for `;`, blocks
// and line breaks closely enough. Every rewrite is checked by compiling it, and the cell runs unchanged if it
// fails.

/** The words of the given strings, split on spaces. */
const words = (...lines) => lines.join(" ").split(" ");
const PUNCTUATORS = words(
  ">>>= ... === !== **= <<= >>= >>> &&= ||= ??=", // longest first
  "=> == != <= >= && || ?? ?. ++ -- += -= *= /= %= &= |= ^= << >> **",
);
const REGEX_AFTER_WORDS = new Set(
  words("return typeof instanceof in of new delete void throw case do else yield await"),
);
// Words after which an expression cannot have ended.
const NOT_AN_END_WORDS = new Set([
  ...REGEX_AFTER_WORDS,
  ...words("if for while with switch try catch finally let const var class function extends"),
  ...words("import export default async static get set"),
]);
const HEADER_WORDS = new Set(words("if for while with switch catch"));
const BLOCK_WORDS = new Set(words("else try finally do"));
// Tokens that, at the start of a line, continue the expression of the line before.
const CONTINUING_PUNCTUATORS = new Set(
  words(
    ". ?. ( [ , ? : = => == === != !== < > <= >= + - * / % ** & | ^ && || ?? << >> >>>",
    "+= -= *= /= %= **= <<= >>= >>>= &= |= ^= &&= ||= ??=",
  ),
);
const STATEMENT_WORDS = new Set(
  words(
    "if for while do switch try throw return break continue var let const class function import export",
    "debugger with else catch finally",
  ),
);
const NAME_START = /[A-Za-z_$#\u0080-\uffff\\]/;
const NAME_REST = /[\w$\u0080-\uffff\\]*/y;
const NUMBER = /(?:0[xXoObB][\da-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?)n?/y;

function tokenize(source) {
  const tokens = [];
  const stack = []; // "(", "[", "{" or "${" (a template substitution)
  let i = 0;
  let newline = false;
  const n = source.length;

  const push = (type, value, start, end) => {
    const token = { type, value, start, end, nl: newline, depth: stack.length };
    newline = false;
    tokens.push(token);
    return token;
  };
  const previous = () => tokens[tokens.length - 1];
  const regexAllowed = () => {
    const prev = previous();
    if (prev === undefined) return true;
    if (prev.type === "name") return REGEX_AFTER_WORDS.has(prev.value);
    if (prev.type !== "punct") return false;
    return !(
      prev.value === ")" ||
      prev.value === "]" ||
      prev.value === "}" ||
      prev.value === "++" ||
      prev.value === "--"
    );
  };
  // Scans template characters from i up to the closing backquote or a `${`; returns true at a `${`.
  const scanTemplate = () => {
    while (i < n) {
      const c = source[i];
      if (c === "\\") i += 2;
      else if (c === "`") {
        i += 1;
        return false;
      } else if (c === "$" && source[i + 1] === "{") {
        i += 2;
        return true;
      } else i += 1;
    }
    return false;
  };

  while (i < n) {
    const c = source[i];
    if (c === "\n" || c === "\r" || c === "\u2028" || c === "\u2029") {
      newline = true;
      i += 1;
    } else if (c === " " || c === "\t" || c === "\v" || c === "\f" || c === "\ufeff" || c === "\u00a0") {
      i += 1;
    } else if (c === "/" && source[i + 1] === "/") {
      while (i < n && source[i] !== "\n" && source[i] !== "\r") i += 1;
    } else if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      if (/[\n\r\u2028\u2029]/.test(source.slice(i, stop))) newline = true;
      i = stop;
    } else if (c === '"' || c === "'") {
      const start = i;
      i += 1;
      while (i < n && source[i] !== c && source[i] !== "\n") i += source[i] === "\\" ? 2 : 1;
      i += 1;
      push("str", c, start, Math.min(i, n));
    } else if (c === "`") {
      const start = i;
      i += 1;
      const open = scanTemplate();
      push("tmpl", "`", start, i);
      if (open) stack.push("${");
    } else if (c === "/" && regexAllowed()) {
      const start = i;
      let inClass = false;
      i += 1;
      while (i < n && source[i] !== "\n") {
        const r = source[i];
        if (r === "\\") i += 1;
        else if (r === "[") inClass = true;
        else if (r === "]") inClass = false;
        else if (r === "/" && !inClass) break;
        i += 1;
      }
      i += 1;
      while (i < n && /\w/.test(source[i])) i += 1;
      push("regex", "/", start, i);
    } else if (/\d/.test(c) || (c === "." && /\d/.test(source[i + 1] || ""))) {
      NUMBER.lastIndex = i;
      const match = NUMBER.exec(source);
      const end = match ? i + match[0].length : i + 1;
      push("num", source.slice(i, end), i, end);
      i = end;
    } else if (NAME_START.test(c)) {
      NAME_REST.lastIndex = i + 1;
      const match = NAME_REST.exec(source);
      const end = i + 1 + (match ? match[0].length : 0);
      push("name", source.slice(i, end), i, end);
      i = end;
    } else if (c === "(" || c === "[" || c === "{") {
      const prev = previous();
      const token = push("punct", c, i, i + 1);
      if (c === "(" && prev !== undefined && prev.type === "name") {
        const before = tokens[tokens.length - 3];
        token.header = HEADER_WORDS.has(prev.value) || (prev.value === "await" && before?.value === "for");
      }
      stack.push(token);
      i += 1;
    } else if (c === ")" || c === "]" || c === "}") {
      const open = stack.pop();
      if (open === "${") {
        i += 1;
        const start = i - 1;
        const reopened = scanTemplate();
        push("tmpl", "`", start, i);
        if (reopened) stack.push("${");
        continue;
      }
      const token = push("punct", c, i, i + 1);
      if (open !== undefined) {
        token.open = open;
        open.close = token;
        if (c === ")") token.header = open.header === true;
      }
      i += 1;
    } else {
      const value = PUNCTUATORS.find((p) => source.startsWith(p, i)) || c;
      push("punct", value, i, i + value.length);
      i += value.length;
    }
  }
  return tokens;
}

function endsAnExpression(token) {
  switch (token.type) {
    case "num":
    case "str":
    case "tmpl":
    case "regex":
      return true;
    case "name":
      return !NOT_AN_END_WORDS.has(token.value);
    default:
      if (token.value === ")") return !token.header;
      return token.value === "]" || token.value === "}" || token.value === "++" || token.value === "--";
  }
}

function continuesStatement(token, statement) {
  if (token.type === "name") {
    return continuesAfterBlock(token, statement) || token.value === "in" || token.value === "instanceof";
  }
  if (token.type === "tmpl") return true; // a tagged template
  return token.type === "punct" && CONTINUING_PUNCTUATORS.has(token.value);
}

function continuesAfterBlock(token, statement) {
  if (token.type !== "name") return false;
  if (token.value === "else" || token.value === "catch" || token.value === "finally") return true;
  return token.value === "while" && statement[0].value === "do";
}

/** Whether the `{` token opens a block (a statement's body), rather than an object literal or arrow body. */
function opensBlock(brace, statement) {
  if (statement.length === 0) return true;
  const prev = statement[statement.length - 1];
  if (prev.type === "punct" && prev.value === ")" && prev.header) return true;
  if (prev.type === "name" && BLOCK_WORDS.has(prev.value)) return true;
  const first = declarationWord(statement);
  if (first === "function" || first === "class") {
    return !statement.some((t) => t !== brace && t.depth === 0 && t.value === "{" && t.type === "punct");
  }
  return false;
}

/** "function", "class", "let", "const", "var" when the statement declares something at the top level. */
function declarationWord(statement) {
  const [first, second] = statement;
  if (first === undefined || first.type !== "name") return null;
  if (first.value === "async" && second?.value === "function" && !second.nl) return "function";
  if (first.value === "function" || first.value === "var") return first.value;
  if (first.value === "class" && second?.type === "name" && second.value !== "extends") return "class";
  if (first.value === "const" && second !== undefined) return "const";
  if (first.value === "let" && second !== undefined) {
    if (second.type === "name" && !["in", "instanceof", "of"].includes(second.value)) return "let";
    if (second.type === "punct" && (second.value === "[" || second.value === "{")) return "let";
  }
  return null;
}

/** The cell's top-level statements, each an array of tokens. */
function statements(tokens) {
  const result = [];
  let current = [];
  for (let k = 0; k < tokens.length; k++) {
    const token = tokens[k];
    if (token.depth > 0) {
      current.push(token);
      continue;
    }
    const closer =
      token.type === "punct" && (token.value === ")" || token.value === "]" || token.value === "}");
    if (current.length > 0 && token.nl && !closer && endsAnExpression(current[current.length - 1])) {
      if (!continuesStatement(token, current)) {
        result.push(current);
        current = [];
      }
    }
    if (token.type === "punct" && token.value === "{") token.block = opensBlock(token, current);
    current.push(token);
    if (token.type === "punct" && token.value === ";") {
      result.push(current);
      current = [];
    } else if (token.type === "punct" && token.value === "}" && token.open?.block) {
      // The end of a block, a function or a class declaration ends the statement, bar `else`, `catch`, ...
      const next = tokens[k + 1];
      if (next === undefined || !continuesAfterBlock(next, current)) {
        result.push(current);
        current = [];
      }
    }
  }
  if (current.length > 0) result.push(current);
  return result;
}

function applyEdits(source, edits) {
  let out = source;
  for (const edit of [...edits].sort((a, b) => b.start - a.start)) {
    out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
  }
  return out;
}

/** The cell for a plain script: top-level let/const/class become vars, so that running it again works. */
function rerunnableScript(source) {
  const edits = [];
  for (const statement of statements(tokenize(source))) {
    const word = declarationWord(statement);
    const first = statement[0];
    if (word === "let") edits.push({ start: first.start, end: first.end, text: "var" });
    else if (word === "const") edits.push({ start: first.start, end: first.end, text: "var  " });
    else if (word === "class") {
      const name = statement[1];
      const last = statement[statement.length - 1];
      if (last.value !== "}") continue;
      edits.push({ start: first.start, end: name.end, text: `var ${name.value} = class ${name.value}` });
      edits.push({ start: last.end, end: last.end, text: ";" });
    }
  }
  return edits.length > 0 ? applyEdits(source, edits) : source;
}

/**
 * The cell for top-level await, as an async function called at once: declarations become assignments to
 * globals (so that they outlive the call), function declarations are copied to globals, and the last
 * statement, when it is an expression, is returned.
 */
function asyncScript(source, returnLast) {
  const edits = [];
  const functions = [];
  const list = statements(tokenize(source));
  list.forEach((statement, index) => {
    const word = declarationWord(statement);
    const first = statement[0];
    const last = statement[statement.length - 1];
    const end = last.value === ";" && last.type === "punct" ? statement.length - 1 : statement.length;
    if (word === "let" || word === "const" || word === "var") {
      const declarators = [];
      let current = [];
      for (const token of statement.slice(1, end)) {
        if (token.depth === 0 && token.type === "punct" && token.value === ",") {
          declarators.push(current);
          current = [];
        } else current.push(token);
      }
      declarators.push(current);
      if (declarators.some((d) => d.length === 0)) throw new Error("unexpected declaration");
      const parts = declarators.map((d) => {
        const text = source.slice(d[0].start, d[d.length - 1].end);
        const assigned = d.some((t) => t.depth === 0 && t.type === "punct" && t.value === "=");
        return assigned ? text : `${text} = undefined`;
      });
      edits.push({ start: first.start, end: statement[end - 1].end, text: `void (${parts.join(", ")})` });
    } else if (word === "class") {
      const name = statement[1];
      edits.push({ start: first.start, end: name.end, text: `void (${name.value} = class ${name.value}` });
      edits.push({ start: statement[end - 1].end, end: statement[end - 1].end, text: ")" });
    } else if (word === "function") {
      const name = statement.find((t, k) => k > 0 && t.type === "name" && t.value !== "function");
      if (name !== undefined) functions.push(name.value);
    } else if (returnLast && index === list.length - 1 && isExpressionStatement(statement)) {
      edits.push({ start: first.start, end: first.start, text: "return (" });
      edits.push({ start: statement[end - 1].end, end: statement[end - 1].end, text: ")" });
    }
  });
  const prologue = functions.map((name) => `globalThis.${name} = ${name};`).join(" ");
  return `(async () => {${prologue} ${applyEdits(source, edits)}\n})()`;
}

function isExpressionStatement(statement) {
  const first = statement[0];
  if (first.type === "punct") return first.value !== "{" && first.value !== ";";
  if (first.type !== "name") return true;
  if (STATEMENT_WORDS.has(first.value)) return false;
  if (first.value === "async" && statement[1]?.value === "function") return false;
  return !(statement[1]?.type === "punct" && statement[1].value === ":"); // a label
}

// --- running cells -----------------------------------------------------------------------------------------

const SCRIPT_OPTIONS = vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER
  ? { importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER }
  : {};

function attempt(make) {
  try {
    return make();
  } catch {
    return null;
  }
}

/** Compiles a cell: as a re-runnable script, or for top-level await; throws the cell's own SyntaxError. */
function compileCell(code, filename) {
  const options = { filename, ...SCRIPT_OPTIONS };
  const tryCompile = (source) => {
    if (source === null) return null;
    try {
      return new vm.Script(source, options);
    } catch {
      return null;
    }
  };
  const rerunnable = attempt(() => rerunnableScript(code));
  const script = (rerunnable !== code && tryCompile(rerunnable)) || null;
  if (script !== null) return script;
  let syntaxError;
  try {
    return new vm.Script(code, options);
  } catch (err) {
    syntaxError = err;
  }
  for (const make of [
    () => asyncScript(code, true),
    () => asyncScript(code, false),
    () => plainAsync(code),
  ]) {
    const compiled = tryCompile(attempt(make));
    if (compiled !== null) return compiled;
  }
  throw syntaxError;
}

function plainAsync(code) {
  return `(async () => {${code}\n})()`;
}

function isThenable(value) {
  try {
    return (
      value !== null &&
      (typeof value === "object" || typeof value === "function") &&
      typeof value.then === "function"
    );
  } catch {
    return false;
  }
}

function interruptedError() {
  const err = new Error("Script execution was interrupted by `SIGINT`");
  err.code = "ERR_SCRIPT_EXECUTION_INTERRUPTED";
  err.stack = `Error [ERR_SCRIPT_EXECUTION_INTERRUPTED]: ${err.message}`;
  return err;
}

function isInterrupt(err) {
  return err !== null && typeof err === "object" && err.code === "ERR_SCRIPT_EXECUTION_INTERRUPTED";
}

function safeInspect(value) {
  try {
    return util.inspect(value);
  } catch (err) {
    return `<inspect() failed: ${err?.message}>`;
  }
}

/** The stack without the kernel's own frames (and what called them), nor the event loop's. */
function userStack(stack) {
  const lines = String(stack).split("\n");
  const cut = lines.findIndex(
    (line) => /^\s+at /.test(line) && (line.includes(KERNEL_FILE) || line.includes("node:vm:")),
  );
  return (cut >= 0 ? lines.slice(0, cut) : lines)
    .filter((line) => !/^\s+at .*\(node:internal\/process\/task_queues:/.test(line))
    .join("\n")
    .replace(/\s+$/, "");
}

/** Writes the error to stderr (one write, after `prefix`); returns its protocol form `{name, message}`. */
function reportError(err, prefix = "") {
  const { text, error } = describeError(err);
  writeStderr(prefix + text);
  return error;
}

/** `text`: what stderr shows; `error`: `{name, message}`. */
function describeError(err) {
  if (isInterrupt(err)) {
    return {
      text: `${userStack(err.stack)}\n`,
      error: { name: "Interrupted", message: String(err.message) },
    };
  }
  const errorLike =
    util.types.isNativeError(err) ||
    (err !== null && typeof err === "object" && typeof err.stack === "string" && "message" in err);
  if (errorLike) {
    let name;
    let message;
    try {
      name = String(err.name);
      message = String(err.message);
    } catch {
      name = "Error";
      message = "<the error could not be read>";
    }
    return { text: `${userStack(err.stack)}\n`, error: { name, message } };
  }
  let name = typeof err;
  if (err === null) name = "null";
  else if (typeof err === "object") name = attempt(() => err.constructor.name) || "Object";
  const message = typeof err === "string" ? err : safeInspect(err);
  return { text: `Uncaught ${safeInspect(err)}\n`, error: { name, message } };
}

function toResult(value) {
  if (value === undefined || value === null) return null;
  switch (typeof value) {
    case "boolean":
    case "string":
      return value;
    case "number":
      return Number.isFinite(value) ? value : { repr: String(value) };
    default:
      return { repr: safeInspect(value) };
  }
}

class Kernel {
  constructor(dataDir) {
    this.context = createSessionContext(dataDir);
    this.cellCount = 0;
    this.interrupt = null; // rejects the promise being awaited, on SIGINT
    process.on("SIGINT", () => {
      // Outside runInContext (breakOnSigint handles that): interrupt an awaited promise; between cells,
      // ignored.
      if (this.interrupt !== null) this.interrupt(interruptedError());
    });
  }

  async runCell(code) {
    this.cellCount += 1;
    const outcome = { type: "done", result: null, images: [], error: null };
    try {
      const script = compileCell(code, `<cell-${this.cellCount}>`);
      // displayErrors off: a runtime error's stack is enough, without the source line of where it was thrown.
      let value = script.runInContext(this.context, { breakOnSigint: true, displayErrors: false });
      if (isThenable(value)) value = await this.awaitInterruptibly(value);
      outcome.result = toResult(value);
    } catch (err) {
      outcome.error = reportError(err);
    }
    return outcome;
  }

  awaitInterruptibly(thenable) {
    return new Promise((resolve, reject) => {
      this.interrupt = reject;
      Promise.resolve(thenable).then(resolve, reject);
    }).finally(() => {
      this.interrupt = null;
    });
  }
}

// --- the control loop --------------------------------------------------------------------------------------

/** The same pipe under a new fd opened O_CLOEXEC (libuv always adds it): subprocesses must not hold it. */
function reopenCloseOnExec(fd, flags) {
  try {
    const copy = fs.openSync(`/proc/self/fd/${fd}`, flags | fs.constants.O_NONBLOCK);
    fs.closeSync(fd);
    return copy;
  } catch {
    return fd;
  }
}

function preferMeUnderMemoryPressure() {
  try {
    fs.writeFileSync("/proc/self/oom_score_adj", "1000");
  } catch {
    // not on Linux, or not allowed
  }
}

function quietExperimentalLoaderWarning() {
  const emitWarning = process.emitWarning;
  process.emitWarning = function (warning, ...rest) {
    const text = typeof warning === "string" ? warning : String(warning?.message);
    if (text.includes("USE_MAIN_CONTEXT_DEFAULT_LOADER")) return undefined;
    return emitWarning.call(this, warning, ...rest);
  };
}

async function main() {
  const [ctrlInArg, ctrlOutArg, dataDir] = process.argv.slice(2);
  preferMeUnderMemoryPressure();
  process.chdir(dataDir);
  const ctrlIn = reopenCloseOnExec(Number(ctrlInArg), fs.constants.O_RDONLY);
  const ctrlOut = reopenCloseOnExec(Number(ctrlOutArg), fs.constants.O_WRONLY);
  for (const [name, stream] of [
    ["stdout", stdout],
    ["stderr", stderr],
  ]) {
    Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => stream });
  }
  quietExperimentalLoaderWarning();
  // Like a notebook: an error in a callback that outlives its cell is reported, not fatal to the session.
  process.on("uncaughtException", (err) => {
    reportError(err, "[sessionpool] uncaught exception in a callback: ");
  });
  process.on("unhandledRejection", (reason) => {
    reportError(reason, "[sessionpool] unhandled promise rejection: ");
  });

  const send = (message) => {
    let text;
    try {
      text = JSON.stringify(message);
    } catch (err) {
      text = JSON.stringify({
        type: "done",
        result: null,
        images: [],
        error: { name: "TypeError", message: `unserializable outcome: ${err.message}` },
      });
    }
    try {
      writeAll(ctrlOut, `${text}\n`);
    } catch {
      process.exit(0); // the agent is gone
    }
  };

  const kernel = new Kernel(path.resolve(dataDir));
  await kernel.runCell("undefined"); // warm the whole path once before saying ready
  kernel.cellCount = 0;
  send({ type: "ready", pid: process.pid });

  const queue = [];
  let busy = false;
  const pump = async () => {
    if (busy) return;
    busy = true;
    try {
      while (queue.length > 0) {
        const line = queue.shift();
        let code;
        try {
          code = JSON.parse(line).code;
          if (typeof code !== "string") throw new TypeError("code is not a string");
        } catch {
          code = "throw new Error('sessionpool kernel: malformed command')";
        }
        send(await kernel.runCell(code));
      }
    } finally {
      busy = false;
    }
  };

  const commands = new net.Socket({ fd: ctrlIn, readable: true, writable: false });
  commands.setEncoding("utf8");
  let pending = "";
  commands.on("data", (chunk) => {
    pending += chunk;
    let end = pending.indexOf("\n");
    while (end >= 0) {
      queue.push(pending.slice(0, end));
      pending = pending.slice(end + 1);
      end = pending.indexOf("\n");
    }
    pump();
  });
  // The agent is gone: exit at once; timers and servers left by cells must not keep the kernel alive.
  commands.on("end", () => process.exit(0));
  commands.on("error", () => process.exit(0));
}

if (require.main === module) {
  main().catch((err) => {
    writeStderr(`sessionpool node kernel: ${err?.stack}\n`);
    process.exit(70);
  });
} else {
  module.exports = { tokenize, statements, rerunnableScript, asyncScript }; // for tests
}
