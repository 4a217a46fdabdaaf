// The agent's `shell` op and its non-Python kernels (SESSIONPOOL_KERNEL=shell|node), run on the host, no Docker,
// driven through AgentClient. The Node.js kernel runs on the system `node` (closest to the image's Node 18).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type {
  ExecResult,
  OutputChunk,
  ShellRequest,
  ShellResult,
} from "../../src/agent-channel/agent-client.ts";
import { AgentRequestError } from "../../src/agent-channel/errors.ts";
import {
  AGENT_PATH,
  type HostAgent,
  isAlive,
  PYTHON,
  startHostAgent,
  stopHostAgent,
} from "../helpers/host-agent.ts";

const NODE =
  process.env.SESSIONPOOL_TEST_NODE ?? (existsSync("/usr/bin/node") ? "/usr/bin/node" : process.execPath);
const MAX_CHARS = 10_000;

type RunningAgent = HostAgent;

function startAgent(env: Record<string, string> = {}): Promise<RunningAgent> {
  // The Node.js kernel is found on PATH: put the node under test first.
  return startHostAgent({ env: { PATH: `${dirname(NODE)}${delimiter}${process.env.PATH ?? ""}`, ...env } });
}

const stopAgent = stopHostAgent;

function shell(agent: RunningAgent, request: Partial<ShellRequest>): Promise<ShellResult> {
  return agent.client.shell({ timeoutMs: 10_000, maxOutputChars: MAX_CHARS, ...request });
}

function run(agent: RunningAgent, code: string, timeoutMs = 10_000): Promise<ExecResult> {
  return agent.client.exec({ code, timeoutMs, maxOutputChars: MAX_CHARS });
}

async function currentPid(agent: RunningAgent): Promise<number> {
  const { pid } = await agent.client.hello();
  agent.pids.add(pid);
  return pid;
}

function assertSucceeded(result: ExecResult): void {
  assert.equal(result.status, "Succeeded", `stderr: ${result.stderr}`);
  assert.equal(result.error, null);
}

async function assertBadRequest(promise: Promise<unknown>, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AgentRequestError, `expected an AgentRequestError, got ${String(err)}`);
    assert.equal(err.agentCode, "BadRequest");
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** What a streamed request's chunks of one stream add up to. */
function joined(chunks: OutputChunk[], stream: OutputChunk["stream"]): string {
  return chunks
    .filter((c) => c.stream === stream)
    .map((c) => c.text)
    .join("");
}

/** The pipes a process holds, as `pipe:[inode]`. */
async function pipesOf(pid: number): Promise<string[]> {
  const fds = await readdir(`/proc/${pid}/fd`);
  const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")));
  return links.filter((link) => link.startsWith("pipe:"));
}

async function eventually(check: () => boolean, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe("shell kernel and the shell op", () => {
  let agent: RunningAgent;

  before(async () => {
    agent = await startAgent({ SESSIONPOOL_KERNEL: "shell" });
  });

  after(async () => {
    if (agent !== undefined) await stopAgent(agent);
  });

  test("hello answers at once, as the shell agent", async () => {
    const hello = await agent.client.hello();
    assert.deepEqual(hello, { agent: "shell", version: "1", pid: agent.child.pid, used: false });
  });

  test("exec is refused: a Shell session runs shell commands", async () => {
    await assertBadRequest(run(agent, "print(1)"), /this is a Shell session; use shellCommand/);
  });

  test("metadata reports bash, python and the installed packages", async () => {
    const meta = await agent.client.metadata();
    assert.equal(meta.runtimes[0]?.name, "bash");
    assert.match(meta.runtimes[0]?.version ?? "", /^\d+\.\d+/);
    assert.ok(meta.runtimes.some((r) => r.name === "python" && /^3\.\d+/.test(r.version)));
    assert.deepEqual(meta.kernel, { name: "bash", version: meta.runtimes[0]?.version });
    assert.ok(Array.isArray(meta.packages));
  });

  test("a command runs through bash -c, with its exit code and both streams", async () => {
    const result = await shell(agent, {
      command: "echo hello; echo oops >&2; [[ -n $BASH_VERSION ]] && exit 3",
    });
    assert.deepEqual(
      { ...result, durationMs: 0 },
      {
        exitCode: 3,
        stdout: "hello\n",
        stderr: "oops\n",
        stdoutTruncated: false,
        stderrTruncated: false,
        timedOut: false,
        durationMs: 0,
      },
    );
    assert.equal(typeof result.durationMs, "number");
    const missing = await shell(agent, { command: "no-such-command-xyz" });
    assert.equal(missing.exitCode, 127);
    assert.match(missing.stderr, /no-such-command-xyz: command not found/);
  });

  test("argv runs directly, without a shell; a missing executable is exit code 127", async () => {
    const result = await shell(agent, { argv: ["printf", "%s|", "a b", "$HOME", "c"] });
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, "a b|$HOME|c|");
    const missing = await shell(agent, { argv: ["no-such-executable-xyz", "arg"] });
    assert.equal(missing.exitCode, 127);
    assert.equal(missing.stdout, "");
    assert.match(missing.stderr, /no-such-executable-xyz: command not found/);
    const notExecutable = await shell(agent, { argv: ["/etc/hostname"] });
    assert.equal(notExecutable.exitCode, 126);
  });

  test("stdin is fed then closed; without stdin the command reads EOF at once", async () => {
    const upper = await shell(agent, { command: "tr a-z A-Z", stdin: "hello\nworld" });
    assert.equal(upper.stdout, "HELLO\nWORLD");
    const count = await shell(agent, { argv: ["wc", "-c"], stdin: "héllo" });
    assert.equal(count.stdout.trim(), "6");
    const big = "x".repeat(1 << 20);
    const large = await shell(agent, { argv: ["wc", "-c"], stdin: big });
    assert.equal(large.stdout.trim(), String(1 << 20));
    const empty = await shell(agent, { command: "cat; echo done", timeoutMs: 5_000 });
    assert.equal(empty.stdout, "done\n");
    assert.equal(empty.timedOut, false);
    const ignored = await shell(agent, { command: "echo no-read", stdin: big });
    assert.equal(ignored.exitCode, 0, "a command that does not read its stdin is not an error");
    assert.equal(ignored.stdout, "no-read\n");
  });

  test("commands run in the data dir, and see its files", async () => {
    const pwd = await shell(agent, { command: "pwd; echo made > made.txt" });
    assert.equal(pwd.stdout, `${agent.dataDir}\n`);
    assert.equal((await agent.client.readFile("made.txt")).data.toString(), "made\n");
    await agent.client.writeFile("given.txt", Buffer.from("given"));
    assert.equal((await shell(agent, { argv: ["cat", "given.txt"] })).stdout, "given");
  });

  test("a streamed command sends its output as it is produced, cut where the answer is cut", async () => {
    const chunks: OutputChunk[] = [];
    let wrote = false;
    // The command waits for a file the test writes only once "first" has come; "é" is split across two writes.
    const result = await agent.client.shell(
      {
        command:
          "echo first; while [ ! -e go-shell ]; do sleep 0.01; done; printf '\\303'; sleep 0.05; printf '\\251\\n'; echo oops >&2; exit 4",
        timeoutMs: 20_000,
        maxOutputChars: MAX_CHARS,
      },
      {
        onOutput: (chunk) => {
          chunks.push(chunk);
          if (!wrote && chunk.text.includes("first")) {
            wrote = true;
            void writeFile(join(agent.dataDir, "go-shell"), "");
          }
        },
      },
    );
    assert.equal(result.exitCode, 4);
    assert.deepEqual(chunks[0], { stream: "stdout", text: "first\n" });
    assert.equal(joined(chunks, "stdout"), result.stdout);
    assert.equal(result.stdout, "first\né\n");
    assert.equal(joined(chunks, "stderr"), "oops\n");

    const cut: OutputChunk[] = [];
    const flood = await agent.client.shell(
      {
        command: "head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail",
        timeoutMs: 10_000,
        maxOutputChars: 50,
      },
      { onOutput: (chunk) => cut.push(chunk) },
    );
    assert.equal(flood.stdoutTruncated, true);
    assert.equal(joined(cut, "stdout"), "x".repeat(50));
  });

  test("each stream is truncated to maxOutputChars", async () => {
    const result = await shell(agent, {
      command: "head -c 5000 /dev/zero | tr '\\0' x; printf 'é%.0s' $(seq 30) >&2",
      maxOutputChars: 100,
    });
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdout, "x".repeat(100));
    assert.equal(result.stdoutTruncated, true);
    assert.equal(result.stderr, "é".repeat(30));
    assert.equal(result.stderrTruncated, false);
    // A flood far larger than the limit: read on (the writer must not block) and cut.
    const flood = await shell(agent, { command: "head -c 50000000 /dev/zero; echo end", maxOutputChars: 10 });
    assert.equal(flood.exitCode, 0);
    assert.equal(flood.stdout, "\0".repeat(10));
    assert.equal(flood.stdoutTruncated, true);
    const none = await shell(agent, { command: "echo a", maxOutputChars: 0 });
    assert.equal(none.stdout, "");
    assert.equal(none.stdoutTruncated, true);
  });

  test("at the timeout the whole process group is killed", async () => {
    const result = await shell(agent, {
      command: "sleep 60 & echo $!; echo started >&2; wait",
      timeoutMs: 500,
    });
    assert.equal(result.timedOut, true);
    assert.equal(result.exitCode, null);
    assert.equal(result.stderr, "started\n");
    const background = Number(result.stdout.trim());
    assert.ok(background > 0, result.stdout);
    agent.pids.add(background);
    assert.ok(result.durationMs >= 500 && result.durationMs < 2_000, `took ${result.durationMs} ms`);
    assert.ok(await eventually(() => !isAlive(background)), "the background sleep was killed too");

    // A command that ignores SIGTERM is killed 2 s later.
    const stubborn = await shell(agent, { command: "trap '' TERM; sleep 60; echo survived", timeoutMs: 300 });
    assert.equal(stubborn.timedOut, true);
    assert.equal(stubborn.exitCode, null);
    assert.equal(stubborn.stdout, "");
    assert.ok(stubborn.durationMs >= 2_200 && stubborn.durationMs < 5_000, `took ${stubborn.durationMs} ms`);
  });

  test("background processes do not hold the answer back", async () => {
    const started = Date.now();
    const result = await shell(agent, { command: "sleep 100 & echo $!; echo ready", timeoutMs: 30_000 });
    assert.equal(result.exitCode, 0);
    assert.equal(result.timedOut, false);
    const [pid, ready] = result.stdout.trim().split("\n");
    agent.pids.add(Number(pid));
    assert.equal(ready, "ready");
    assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms`);
    assert.ok(isAlive(Number(pid)), "a background process is left running, not killed");
    process.kill(Number(pid), "SIGKILL");

    const nohup = await shell(agent, {
      command: "nohup sleep 100 >/dev/null 2>&1 & echo $!",
      timeoutMs: 30_000,
    });
    assert.equal(nohup.exitCode, 0);
    agent.pids.add(Number(nohup.stdout.trim()));
    process.kill(Number(nohup.stdout.trim()), "SIGKILL");
    assert.ok(Date.now() - started < 6_000, `took ${Date.now() - started} ms`);
  });

  test("commands run one at a time, in order; files are served meanwhile", async () => {
    // The first command holds the runner until the test writes `go`: the second must wait behind it.
    const first = shell(agent, {
      command: "while [ ! -e go ]; do sleep 0.01; done; echo a >> order.txt",
    });
    const second = shell(agent, { command: "echo b >> order.txt; cat order.txt" });
    const listed = await agent.client.listFiles("", false);
    assert.ok(Array.isArray(listed));
    await agent.client.writeFile("go", Buffer.from(""));
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.exitCode, 0);
    assert.equal(b.stdout, "a\nb\n");
  });

  test("malformed shell requests are refused", async () => {
    const client = agent.client;
    await assertBadRequest(
      client.shell({ command: "true", argv: ["true"], timeoutMs: 1_000, maxOutputChars: 10 }),
      /exactly one of command and argv/,
    );
    await assertBadRequest(
      client.shell({ timeoutMs: 1_000, maxOutputChars: 10 }),
      /exactly one of command and argv/,
    );
    await assertBadRequest(client.shell({ argv: [], timeoutMs: 1_000, maxOutputChars: 10 }), /argv/);
    await assertBadRequest(
      client.shell({ argv: [1 as unknown as string], timeoutMs: 1_000, maxOutputChars: 10 }),
      /argv/,
    );
    await assertBadRequest(client.shell({ command: "a\0b", timeoutMs: 1_000, maxOutputChars: 10 }), /NUL/);
    await assertBadRequest(
      client.shell({ command: "true", stdin: 5 as unknown as string, timeoutMs: 1_000, maxOutputChars: 10 }),
      /stdin/,
    );
    await assertBadRequest(client.shell({ command: "true", timeoutMs: 0, maxOutputChars: 10 }), /timeoutMs/);
    assert.equal((await shell(agent, { command: "echo still fine" })).stdout, "still fine\n");
  });
});

describe("shell op in a Python session", () => {
  test("a command runs while an execution is in progress, not through the interpreter", async () => {
    const agent = await startAgent();
    try {
      const blocked = run(
        agent,
        "import os, time\nwhile not os.path.exists('release'): time.sleep(0.01)\n'released'",
        30_000,
      );
      const released = await shell(agent, { command: "touch release; echo $$" });
      assert.equal(released.exitCode, 0);
      const result = await blocked;
      assertSucceeded(result);
      assert.equal(result.result, "released");
    } finally {
      await stopAgent(agent);
    }
  });

  test("an unknown SESSIONPOOL_KERNEL stops the agent with a message", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sp-kernels-"));
    try {
      const child = spawn(PYTHON, [AGENT_PATH], {
        env: {
          ...process.env,
          SESSIONPOOL_KERNEL: "cobol",
          SESSIONPOOL_AGENT_SOCKET: join(dir, "agent.sock"),
          SESSIONPOOL_DATA_DIR: join(dir, "data"),
        },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr?.setEncoding("utf8").on("data", (text: string) => {
        stderr += text;
      });
      const [code] = await once(child, "exit");
      assert.equal(code, 2);
      assert.match(stderr, /SESSIONPOOL_KERNEL='cobol' is not one of python, node, shell/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("node kernel", () => {
  let agent: RunningAgent;

  before(async () => {
    agent = await startAgent({ SESSIONPOOL_KERNEL: "node" });
  });

  after(async () => {
    if (agent !== undefined) await stopAgent(agent);
  });

  test("hello answers once the Node.js kernel is ready", async () => {
    const hello = await agent.client.hello();
    assert.equal(hello.agent, "node");
    assert.equal(hello.version, "1");
    assert.ok(isAlive(hello.pid));
    const cmdline = (await readFile(`/proc/${hello.pid}/cmdline`, "utf8")).split("\0");
    assert.equal(cmdline[0], NODE);
    assert.match(cmdline[1] ?? "", /node_kernel\.js$/);
  });

  test("console.log(1+1) is captured on stdout", async () => {
    const result = await run(agent, "console.log(1+1)");
    assert.deepEqual(
      { ...result, durationMs: 0 },
      {
        status: "Succeeded",
        stdout: "2\n",
        stderr: "",
        stdoutTruncated: false,
        stderrTruncated: false,
        result: null,
        images: [],
        error: null,
        timedOut: false,
        restarted: false,
        durationMs: 0,
      },
    );
  });

  test("declarations persist across executions, and can be run again", async () => {
    assertSucceeded(await run(agent, "let x = 41"));
    assert.equal((await run(agent, "x + 1")).result, 42);
    assertSucceeded(
      await run(agent, "function double(n) { return n * 2 }\nclass Box { constructor(v) { this.v = v } }"),
    );
    assert.equal((await run(agent, "double(new Box(21).v)")).result, 42);
    // Running a cell again redeclares its let/const/class, as in a notebook.
    assertSucceeded(await run(agent, "let x = 1\nconst k = 'a'\nclass Box {}"));
    assertSucceeded(await run(agent, "let x = 2\nconst k = 'b'\nclass Box { get v() { return 7 } }"));
    assert.deepEqual((await run(agent, "[x, k, new Box().v]")).result, { repr: "[ 2, 'b', 7 ]" });
    // Braces in regular expressions, templates and comments do not hide or invent a declaration.
    const tricky = `const re = /[}{]/ // }\nlet t = \`\${'}'}\`, n = 1 /* { */\nclass K { static v = re.test(t) ? n : 0 }`;
    assertSucceeded(await run(agent, tricky));
    assertSucceeded(await run(agent, tricky));
    assert.equal((await run(agent, "K.v")).result, 1);
  });

  test("the completion value is the result, by type", async () => {
    const cases: [string, unknown][] = [
      ["1 + 1", 2],
      ["0.25", 0.25],
      ["'héllo'", "héllo"],
      ["true", true],
      ["null", null],
      ["undefined", null],
      ["let unused = 3", null],
      ["if (true) { 'from a block' }", "from a block"],
      ["NaN", { repr: "NaN" }],
      ["2n ** 64n", { repr: "18446744073709551616n" }],
      ["[1, 'a']", { repr: "[ 1, 'a' ]" }],
      ["({ k: [1, 2] })", { repr: "{ k: [ 1, 2 ] }" }],
      ["new Map([[1, 2]])", { repr: "Map(1) { 1 => 2 }" }],
      ["Promise.resolve(5)", 5],
    ];
    for (const [code, expected] of cases) {
      const result = await run(agent, code);
      assertSucceeded(result);
      assert.deepEqual(result.result, expected, code);
    }
  });

  test("top-level await, with declarations that persist", async () => {
    const awaited = await run(agent, "await new Promise(r => setTimeout(r, 50)); 7");
    assertSucceeded(awaited);
    assert.equal(awaited.result, 7);
    assertSucceeded(
      await run(
        agent,
        "const fetched = await Promise.resolve(3)\nasync function later() { return fetched * 2 }",
      ),
    );
    const next = await run(agent, "await later()");
    assertSucceeded(next);
    assert.equal(next.result, 6);
    // A class declaration followed by a line that starts with `[`: still two statements once rewritten.
    const classThenArray = await run(
      agent,
      "const one = await Promise.resolve(1)\nclass Later {}\n[one].length",
    );
    assertSucceeded(classThenArray);
    assert.equal(classThenArray.result, 1);
    assert.equal((await run(agent, "typeof Later")).result, "function");
  });

  test("an exception fails the execution with the stack in stderr", async () => {
    const result = await run(
      agent,
      "console.log('before')\nfunction f() {\n  throw new Error('boom')\n}\nf()",
    );
    assert.equal(result.status, "Failed");
    assert.equal(result.stdout, "before\n");
    assert.deepEqual(result.error, { name: "Error", message: "boom" });
    assert.match(result.stderr, /Error: boom\n\s+at f \(<cell-\d+>:3:9\)\n\s+at <cell-\d+>:5:1\n$/);
    assert.doesNotMatch(result.stderr, /node_kernel\.js|node:vm/);

    const syntax = await run(agent, "1 +");
    assert.equal(syntax.status, "Failed");
    assert.equal(syntax.error?.name, "SyntaxError");
    assert.match(syntax.stderr, /SyntaxError/);
    assert.doesNotMatch(syntax.stderr, /node_kernel\.js/);

    const thrown = await run(agent, "throw 'plain'");
    assert.equal(thrown.status, "Failed");
    assert.deepEqual(thrown.error, { name: "string", message: "plain" });
    assert.match(thrown.stderr, /Uncaught 'plain'/);

    const rejected = await run(agent, "await Promise.reject(new TypeError('nope'))");
    assert.deepEqual(rejected.error, { name: "TypeError", message: "nope" });
    assert.equal((await run(agent, "x")).result, 2, "the state is kept");
  });

  test("a streamed execution sends its output as it is produced, and the same answer", async () => {
    const chunks: OutputChunk[] = [];
    let wrote = false;
    const code =
      "const fs = require('fs');\nconsole.log('first');\n" +
      "while (!fs.existsSync('go-node')) await new Promise((r) => setTimeout(r, 10));\n" +
      "console.error('second');\nprocess.stdout.write('third');\n42";
    const result = await agent.client.exec(
      { code, timeoutMs: 20_000, maxOutputChars: MAX_CHARS },
      {
        onOutput: (chunk) => {
          chunks.push(chunk);
          if (!wrote && chunk.text.includes("first")) {
            wrote = true;
            void writeFile(join(agent.dataDir, "go-node"), "");
          }
        },
      },
    );
    assertSucceeded(result);
    assert.equal(result.result, 42);
    assert.deepEqual(chunks[0], { stream: "stdout", text: "first\n" });
    assert.equal(joined(chunks, "stdout"), "first\nthird");
    assert.equal(joined(chunks, "stdout"), result.stdout);
    assert.equal(joined(chunks, "stderr"), result.stderr);
    assert.equal(result.stderr, "second\n");
  });

  test("output of console, process.stdout and subprocesses is captured in order", async () => {
    const result = await run(
      agent,
      "process.stdout.write('a')\nconsole.error('e')\nrequire('child_process').execSync('echo b; echo se >&2', { stdio: 'inherit' })\n" +
        "console.log('c')\nconsole.log({ n: 1 })",
    );
    assertSucceeded(result);
    assert.equal(result.stdout, "ab\nc\n{ n: 1 }\n");
    assert.equal(result.stderr, "e\nse\n");
  });

  test("a timeout interrupts a busy loop and keeps the state", async () => {
    assertSucceeded(await run(agent, "let kept = 5"));
    const pid = await currentPid(agent);
    const result = await run(agent, "console.log('started')\nwhile (true) {}", 500);
    assert.equal(result.status, "Failed");
    assert.equal(result.timedOut, true);
    assert.equal(result.restarted, false);
    assert.equal(result.error?.name, "Interrupted");
    assert.equal(result.stdout, "started\n");
    assert.match(result.stderr, /interrupted/);
    assert.ok(result.durationMs < 2_000, `took ${result.durationMs} ms`);
    assert.equal((await run(agent, "kept")).result, 5);
    assert.equal(await currentPid(agent), pid);

    const awaiting = await run(agent, "await new Promise(() => {})", 300);
    assert.equal(awaiting.timedOut, true);
    assert.equal(awaiting.restarted, false);
    assert.equal((await run(agent, "kept + 1")).result, 6);
    assert.equal(await currentPid(agent), pid);
  });

  test("a busy loop after an await cannot be interrupted: the kernel is restarted", async () => {
    const pid = await currentPid(agent);
    const result = await run(agent, "await null\nwhile (true) {}", 300);
    assert.equal(result.timedOut, true);
    assert.equal(result.restarted, true);
    assert.equal(result.error?.name, "TimeoutError");
    assert.ok(!isAlive(pid));
    assert.notEqual(await currentPid(agent), pid);
    assertSucceeded(await run(agent, "let kept = 5"));
  });

  test("an endless flood of output is cut and interrupted", async () => {
    const result = await agent.client.exec({
      code: "while (true) console.log('x'.repeat(1000))",
      timeoutMs: 1_000,
      maxOutputChars: 1_000,
    });
    assert.equal(result.timedOut, true);
    assert.equal(result.restarted, false);
    assert.equal(result.stdout, "x".repeat(1_000));
    assert.equal(result.stdoutTruncated, true);
    assert.equal((await run(agent, "kept")).result, 5);
    // Interrupted in the middle of a write or not, the console still works.
    for (let i = 0; i < 5; i++) {
      const flood = await agent.client.exec({
        code: "for (;;) { console.log('y'); process.stdout.write('z\\n') }",
        timeoutMs: 100 + i * 37,
        maxOutputChars: 10,
      });
      assert.equal(flood.timedOut, true);
      assert.equal((await run(agent, "console.log('after'); console.error('err')")).stdout, "after\n");
    }
  });

  test("require, __dirname and the cwd are the data dir", async () => {
    const wrote = await run(agent, "require('fs').writeFileSync('f.txt', 'x'); [process.cwd(), __dirname]");
    assertSucceeded(wrote);
    assert.equal(await readFile(join(agent.dataDir, "f.txt"), "utf8"), "x");
    assert.deepEqual(wrote.result, { repr: `[ '${agent.dataDir}', '${agent.dataDir}' ]` });
    await agent.client.writeFile(
      "node_modules/local-mod/index.js",
      Buffer.from("module.exports = () => 'local'"),
    );
    await agent.client.writeFile("helper.js", Buffer.from("exports.answer = 42"));
    const required = await run(agent, "require('local-mod')() + require('./helper').answer");
    assertSucceeded(required);
    assert.equal(required.result, "local42");
  });

  test("an error in a callback after the execution does not kill the kernel", async () => {
    const pid = await currentPid(agent);
    // The callback throws after the cell is done; the file it schedules first is written only once the kernel
    // has handled the throw (and, earlier still, the rejection) and gone on running.
    assertSucceeded(
      await run(
        agent,
        "setTimeout(() => { setImmediate(() => require('fs').writeFileSync('late-handled', '')); " +
          "throw new Error('late') }, 10); Promise.reject(1); 0",
      ),
    );
    assert.ok(
      await eventually(() => existsSync(join(agent.dataDir, "late-handled"))),
      "the kernel went on after the late error",
    );
    const next = await run(agent, "kept");
    assertSucceeded(next);
    assert.equal(next.result, 5);
    assert.equal(next.restarted, false);
    assert.equal(await currentPid(agent), pid);
  });

  test("process.exit restarts the kernel", async () => {
    const pid = await currentPid(agent);
    const result = await run(agent, "console.log('bye'); process.exit(1)");
    assert.equal(result.status, "Failed");
    assert.equal(result.restarted, true);
    assert.equal(result.stdout, "bye\n");
    assert.deepEqual(result.error, { name: "KernelDied", message: "the interpreter exited with code 1" });
    assert.ok(!isAlive(pid));
    const next = await run(agent, "typeof kept");
    assertSucceeded(next);
    assert.equal(next.result, "undefined");
    assert.notEqual(await currentPid(agent), pid);
  });

  test("subprocesses do not inherit the control pipes", async () => {
    const result = await run(
      agent,
      "(require('child_process').execSync('ls -l /proc/self/fd', { encoding: 'utf8' }).match(/pipe:\\[\\d+\\]/g) || []).join(' ')",
    );
    assertSucceeded(result);
    const inChild = new Set(String(result.result).split(" "));
    // The agent's ends of its pipes to the kernel, less pipes this test process has too (inherited from outside).
    const ours = new Set(await pipesOf(process.pid));
    const leaked = (await pipesOf(agent.child.pid as number)).filter((p) => inChild.has(p) && !ours.has(p));
    assert.deepEqual(leaked, []);
  });

  test("metadata reports node and the kernel", async () => {
    const meta = await agent.client.metadata();
    assert.equal(meta.runtimes[0]?.name, "node");
    assert.match(meta.runtimes[0]?.version ?? "", /^\d+\.\d+\.\d+$/);
    assert.ok(meta.runtimes.some((r) => r.name === "python"));
    assert.deepEqual(meta.kernel, { name: "sessionpool-node", version: "1" });
  });

  test("shell commands run in a Node.js session too", async () => {
    const result = await shell(agent, { command: "node --version" });
    assert.equal(result.exitCode, 0);
    assert.match(result.stdout, /^v\d+/);
  });
});
