// The sessionpool Node.js kernel: runs one cell at a time for agent.py, like a Jupyter JavaScript kernel.
//
// Started by agent.py as `node node_kernel.js CTRL_IN_FD CTRL_OUT_FD DATA_DIR` in its own session (process
// group), exactly like kernel.py and speaking the same control protocol: the control pipes carry one JSON
// object per line, `{"code": ...}` in; out, `{"type": "ready", "pid": ...}` once, then one `{"type": "done",
// "result", "images", "error"}` per cell. fds 1 and 2 are pipes the agent reads all the time; everything the
// cell prints is written to them synchronously, so it is all there before "done" is sent.
//
// Cells run in one persistent `vm` context. Each is parsed with acorn: top-level `let`/`const`/`class`
// declarations are turned into `var`s before running (so that a cell can be run again: V8 refuses to redeclare a
// script-scope lexical binding), and the script's completion value is the result. Code with top-level `await`
// runs in an async function, its declarations turned into assignments to globals and its last expression
// returned. SIGINT (the agent's timeout) interrupts a running synchronous loop (`breakOnSigint`) or an awaited
// promise; the context is kept.
//
// Plain CommonJS, one dependency: acorn, from Debian's node-acorn (see ACORN_PATH). Runs on Debian bookworm's
// Node.js 18 and on newer ones.
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
// Cells are parsed with acorn, Debian's node-acorn, loaded by its absolute path so that no other copy (in the
// data dir, or a node_modules above the agent) can stand in for it. Every rewrite is checked by compiling it,
// and the cell runs unchanged if that fails.

const ACORN_PATH = "/usr/share/nodejs/acorn";

function loadAcorn() {
  try {
    return require(ACORN_PATH);
  } catch (err) {
    throw new Error(`acorn (Debian package node-acorn) is missing at ${ACORN_PATH}: ${err.message}`);
  }
}

const acorn = loadAcorn();

/** The cell's syntax tree, as a script; `topLevelAwait` allows `await` outside functions. Throws if invalid. */
function parse(source, topLevelAwait) {
  return acorn.parse(source, {
    ecmaVersion: "latest",
    sourceType: "script",
    allowAwaitOutsideFunction: topLevelAwait,
  });
}

function applyEdits(source, edits) {
  let out = source;
  for (const edit of [...edits].sort((a, b) => b.start - a.start)) {
    out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
  }
  return out;
}

/** The cell for a plain script: top-level let/const/class become vars, so that running it again works. */
function rerunnableScript(source, tree = parse(source, false)) {
  const edits = [];
  for (const node of tree.body) {
    if (node.type === "VariableDeclaration" && (node.kind === "let" || node.kind === "const")) {
      // As wide as the keyword it replaces: columns in stack traces still point into the cell as written.
      const text = node.kind === "let" ? "var" : "var  ";
      edits.push({ start: node.start, end: node.start + node.kind.length, text });
    } else if (node.type === "ClassDeclaration") {
      const name = node.id.name;
      edits.push({ start: node.start, end: node.id.end, text: `var ${name} = class ${name}` });
      edits.push({ start: node.end, end: node.end, text: ";" });
    }
  }
  return applyEdits(source, edits);
}

/**
 * The cell for top-level await, as an async function called at once: declarations become assignments to
 * globals (so that they outlive the call), function declarations are copied to globals, and the last
 * statement, when it is an expression, is returned.
 */
function asyncScript(source, tree = parse(source, true)) {
  const edits = [];
  const functions = [];
  const body = tree.body;
  body.forEach((node, index) => {
    if (node.type === "VariableDeclaration") {
      const parts = node.declarations.map((declarator) => {
        const text = source.slice(declarator.start, declarator.end);
        return declarator.init === null ? `${text} = undefined` : text;
      });
      const end = node.declarations[node.declarations.length - 1].end;
      // `;` after it: the next line may start with `(` or `[`, which would call or index the `void (...)`.
      edits.push({ start: node.start, end, text: `void (${parts.join(", ")});` });
    } else if (node.type === "ClassDeclaration") {
      const name = node.id.name;
      edits.push({ start: node.start, end: node.id.end, text: `void (${name} = class ${name}` });
      edits.push({ start: node.end, end: node.end, text: ");" });
    } else if (node.type === "FunctionDeclaration") {
      functions.push(node.id.name);
    } else if (index === body.length - 1 && node.type === "ExpressionStatement") {
      edits.push({ start: node.expression.start, end: node.expression.start, text: "return (" });
      edits.push({ start: node.expression.end, end: node.expression.end, text: ")" });
    }
  });
  const prologue = functions.map((name) => `globalThis.${name} = ${name};`).join(" ");
  return `(async () => {${prologue} ${applyEdits(source, edits)}\n})()`;
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
  const compile = (source) => new vm.Script(source, options);
  const script = attempt(() => parse(code, false));
  if (script !== null) {
    const rerunnable = rerunnableScript(code, script);
    return (rerunnable !== code && attempt(() => compile(rerunnable))) || compile(code);
  }
  const awaiting = attempt(() => parse(code, true));
  const compiled = awaiting !== null ? attempt(() => compile(asyncScript(code, awaiting))) : null;
  if (compiled !== null) return compiled;
  // Syntax acorn does not know yet runs unchanged where V8 knows it; otherwise this is the cell's SyntaxError.
  let syntaxError;
  try {
    return compile(code);
  } catch (err) {
    syntaxError = err;
  }
  const wrapped = attempt(() => compile(`(async () => {${code}\n})()`));
  if (wrapped !== null) return wrapped;
  throw syntaxError;
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
          const command = JSON.parse(line);
          code = command.code;
          if (typeof code !== "string") throw new TypeError("code is not a string");
          // Variables the session was given since the last cell (op env.set), set before this one runs.
          if (command.env !== null && typeof command.env === "object") {
            for (const [name, value] of Object.entries(command.env)) process.env[name] = String(value);
          }
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
  module.exports = { rerunnableScript, asyncScript }; // for tests
}
