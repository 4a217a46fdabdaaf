// The Python agent (sandbox-agent/agent.py) run on the host, no Docker, driven through AgentClient: exec
// semantics, timeouts and restarts, output capture, files and path containment, reconnects, protocol robustness.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { access, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ExecResult, OutputChunk } from "../../src/agent-channel/agent-client.ts";
import { AgentEndpoint, waitForAgent } from "../../src/agent-channel/agent-endpoint.ts";
import {
  AgentRequestError,
  AgentTimeoutError,
  AgentUnavailableError,
} from "../../src/agent-channel/errors.ts";
import {
  type HostAgent,
  isAlive,
  PYTHON,
  reattach,
  startHostAgent,
  stopHostAgent,
} from "../helpers/host-agent.ts";

const MAX_CHARS = 10_000;

type RunningAgent = HostAgent;

function startAgent(env: Record<string, string> = {}): Promise<RunningAgent> {
  return startHostAgent({ env });
}

const stopAgent = stopHostAgent;

function run(
  agent: RunningAgent,
  code: string,
  timeoutMs = 10_000,
  maxOutputChars = MAX_CHARS,
): Promise<ExecResult> {
  return agent.client.exec({ code, timeoutMs, maxOutputChars });
}

async function currentPid(agent: RunningAgent): Promise<number> {
  const { pid } = await agent.client.hello();
  agent.pids.add(pid);
  return pid;
}

async function agentRssKiB(agent: RunningAgent): Promise<number> {
  const status = await readFile(`/proc/${agent.child.pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  assert.ok(match, "VmRSS in /proc/<pid>/status");
  return Number(match[1]);
}

async function assertAgentError(promise: Promise<unknown>, code: string, statusCode: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AgentRequestError, `expected an AgentRequestError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.agentCode, code);
    assert.equal(err.statusCode, statusCode);
    return true;
  });
}

function frame(header: Record<string, unknown>): Buffer {
  const body = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(body.length, 0);
  return Buffer.concat([prefix, body]);
}

/** What a streamed request's chunks of one stream add up to. */
function joined(chunks: OutputChunk[], stream: OutputChunk["stream"]): string {
  return chunks
    .filter((c) => c.stream === stream)
    .map((c) => c.text)
    .join("");
}

function assertSucceeded(result: ExecResult): void {
  assert.equal(result.status, "Succeeded", `stderr: ${result.stderr}`);
  assert.equal(result.error, null);
}

function matplotlibAvailable(): boolean {
  try {
    execFileSync(PYTHON, ["-c", "import matplotlib"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("python agent", () => {
  let agent: RunningAgent;

  before(async () => {
    agent = await startAgent();
  });

  after(async () => {
    if (agent !== undefined) await stopAgent(agent);
  });

  test("hello names the agent and the interpreter pid", async () => {
    const hello = await agent.client.hello();
    assert.equal(hello.agent, "python");
    assert.equal(hello.version, "1");
    assert.equal(typeof hello.pid, "number");
    assert.ok(isAlive(hello.pid));
  });

  test("the first interpreter, forked from the agent, is what a restart starts afresh", async () => {
    // A module named like one of the agent's own, in the data dir: the code must import it, not the agent's.
    await writeFile(join(agent.dataDir, "files.py"), "MARK = 'user'\n");
    const probe = [
      "import ctypes, json, os, signal, sys",
      "kinds = []",
      "for fd in os.listdir('/proc/self/fd'):",
      "    try: kinds.append(os.readlink(f'/proc/self/fd/{fd}').split(':[')[0])",
      "    except OSError: pass",
      "import files",
      "print(json.dumps({",
      "    'flags': repr(sys.flags), 'path': sys.path, 'argv': sys.argv, 'main': sys.modules['__main__'].__dict__ is globals(),",
      "    'sessionLeader': os.getsid(0) == os.getpid(), 'dumpable': ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),",
      "    'stdio': [(s.name, s.mode, s.encoding, s.errors, s.write_through, s.line_buffering, type(s.buffer).__name__) for s in (sys.stdin, sys.stdout, sys.stderr)],",
      "    'fds': sorted(kinds), 'files': files.MARK, 'sigterm': signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,",
      "    'agentModules': sorted(set(sys.modules) & {'agent', 'connection', 'dispatch', 'supervisor', 'kernel', 'kernel_process', 'protocol'}),",
      "}))",
    ].join("\n");
    const forked = await run(agent, probe);
    assertSucceeded(forked);
    const seen = JSON.parse(forked.stdout) as Record<string, unknown>;
    assert.deepEqual(
      { ...seen, flags: undefined, path: undefined, stdio: undefined },
      {
        argv: [""],
        main: true,
        sessionLeader: true,
        dumpable: 1, // the agent is not (agent.py make_undumpable); the session's own processes are
        fds: ["/dev/null", "pipe", "pipe", "pipe", "pipe"], // stdin, stdout, stderr, the two control pipes
        files: "user",
        sigterm: true,
        agentModules: [],
        flags: undefined,
        path: undefined,
        stdio: undefined,
      },
    );
    const pid = await currentPid(agent);
    // A fork keeps the agent's command line; a spawned interpreter has its own.
    assert.match(await readFile(`/proc/${pid}/cmdline`, "utf8"), /agent\.py/);
    assert.equal((await run(agent, "import os\nos._exit(3)")).restarted, true);
    const spawned = await run(agent, probe);
    assertSucceeded(spawned);
    const next = await currentPid(agent);
    assert.notEqual(next, pid);
    assert.match(await readFile(`/proc/${next}/cmdline`, "utf8"), /kernel\.py/);
    assert.deepEqual(JSON.parse(spawned.stdout), seen, "a spawned interpreter looks the same to the code");
  });

  test("print(1+1) is captured on stdout", async () => {
    const result = await run(agent, "print(1+1)");
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
    assert.equal(typeof result.durationMs, "number");
  });

  test("state survives across executions", async () => {
    assertSucceeded(await run(agent, "x = 41"));
    const result = await run(agent, "x + 1");
    assertSucceeded(result);
    assert.equal(result.result, 42);
  });

  test("the last expression is the result, by type", async () => {
    const cases: [string, unknown][] = [
      ["None", null],
      ["x = 3", null],
      ["1 + 1", 2],
      ["a = 2\na * 21", 42],
      ["-(2**53)", -(2 ** 53)],
      ["2**60", { repr: "1152921504606846976" }],
      ["0.25", 0.25],
      ["float('nan')", { repr: "nan" }],
      ["'héllo'", "héllo"],
      ["True", true],
      ["[1, 'a']", { repr: "[1, 'a']" }],
      ["{'k': (1, 2)}", { repr: "{'k': (1, 2)}" }],
      ["print('shown')", null],
      [
        "class Rich:\n  def __repr__(self): return 'Rich()'\n  def _repr_html_(self): return '<b>rich</b>'\nRich()",
        { repr: "Rich()", html: "<b>rich</b>" },
      ],
      [
        "class Pic:\n  def __repr__(self): return 'Pic()'\n  def _repr_png_(self): return b'\\x89PNG'\nPic()",
        { repr: "Pic()", png: Buffer.from("\x89PNG", "latin1").toString("base64") },
      ],
      [
        "class Broken:\n  def _repr_html_(self): raise ValueError()\n  def __repr__(self): return 'B'\nBroken()",
        { repr: "B" },
      ],
      ["import asyncio\nawait asyncio.sleep(0)\n'awaited'", "awaited"],
    ];
    for (const [code, expected] of cases) {
      const result = await run(agent, code);
      assertSucceeded(result);
      assert.deepEqual(result.result, expected, code);
    }
  });

  test("an exception fails the execution with a readable traceback", async () => {
    const result = await run(agent, "print('before')\ndef f():\n    return 1 / 0\nf()");
    assert.equal(result.status, "Failed");
    assert.equal(result.stdout, "before\n");
    assert.deepEqual(result.error, { name: "ZeroDivisionError", message: "division by zero" });
    assert.match(result.stderr, /^Traceback \(most recent call last\):/);
    assert.match(result.stderr, /File "<cell-\d+>", line 4, in <module>/);
    assert.match(result.stderr, /return 1 \/ 0/);
    assert.match(result.stderr, /ZeroDivisionError: division by zero\n$/);
    assert.doesNotMatch(result.stderr, /kernel\.py|agent\.py/);
    assert.equal(result.timedOut, false);
    assert.equal(result.restarted, false);

    const syntax = await run(agent, "1 +");
    assert.equal(syntax.status, "Failed");
    assert.equal(syntax.error?.name, "SyntaxError");
    assert.match(syntax.stderr, /SyntaxError/);
    assert.doesNotMatch(syntax.stderr, /kernel\.py/);

    const exit = await run(agent, "import sys; sys.exit(3)");
    assert.equal(exit.status, "Failed");
    assert.deepEqual(exit.error, { name: "SystemExit", message: "3" });
    assertSucceeded(await run(agent, "x"));
  });

  test("output of subprocesses is captured, in order with print", async () => {
    const echo = await run(agent, "import os; os.system('echo hi')");
    assertSucceeded(echo);
    assert.equal(echo.stdout, "hi\n");
    assert.equal(echo.result, 0);

    const mixed = await run(
      agent,
      "import os, subprocess, sys\nprint('a', end='')\nos.system('echo b')\nsubprocess.run(['sh', '-c', 'echo err >&2'])\n" +
        "sys.stderr.write('py-err\\n')\nprint('c')",
    );
    assertSucceeded(mixed);
    assert.equal(mixed.stdout, "ab\nc\n");
    assert.equal(mixed.stderr, "err\npy-err\n");
  });

  test("output written between executions is discarded and never blocks the interpreter", async () => {
    // A background writer that produces 4 MiB, far more than a pipe holds, after its execution has finished.
    const started = await run(
      agent,
      "import subprocess\nbg = subprocess.Popen(['sh', '-c', 'while [ ! -f go ]; do sleep 0.01; done; " +
        'head -c 4194304 /dev/zero | tr "\\\\0" x; echo; echo late; touch done\'])',
    );
    assertSucceeded(started);
    assertSucceeded(await run(agent, "open('go', 'w').close()"));
    const after = await run(
      agent,
      "import os, time\nwhile not os.path.exists('done'): time.sleep(0.01)\nbg.wait()\nos.remove('go'); os.remove('done')",
      20_000,
    );
    assertSucceeded(after);
    assert.ok(!after.stdout.includes("late"), "output of the previous window leaked");
    const next = await run(agent, "print('clean')");
    assert.equal(next.stdout, "clean\n");
  });

  test("a timeout interrupts the code and keeps the state", async () => {
    assertSucceeded(await run(agent, "x = 5"));
    const pid = await currentPid(agent);
    const result = await run(agent, "import time\nprint('started', flush=True)\ntime.sleep(30)", 500);
    assert.equal(result.status, "Failed");
    assert.equal(result.timedOut, true);
    assert.equal(result.restarted, false);
    assert.equal(result.error?.name, "KeyboardInterrupt");
    assert.equal(result.stdout, "started\n");
    assert.match(result.stderr, /KeyboardInterrupt/);
    assert.ok(result.durationMs < 2_000, `took ${result.durationMs} ms`);
    const after = await run(agent, "x");
    assert.equal(after.result, 5);
    assert.equal(await currentPid(agent), pid);
  });

  test("code that ignores the interrupt is killed and the interpreter restarted", async () => {
    assertSucceeded(await run(agent, "y = 1"));
    const pid = await currentPid(agent);
    const result = await run(
      agent,
      "import time\nwhile True:\n  try:\n    time.sleep(10)\n  except KeyboardInterrupt:\n    pass",
      300,
    );
    assert.equal(result.status, "Failed");
    assert.equal(result.timedOut, true);
    assert.equal(result.restarted, true);
    assert.equal(result.error?.name, "TimeoutError");
    assert.match(result.stderr, /restarted/);
    assert.ok(!isAlive(pid), "the old interpreter is gone");
    const next = await run(agent, "'y' in globals(), 1 + 1");
    assertSucceeded(next);
    assert.deepEqual(next.result, { repr: "(False, 2)" });
    assert.equal(next.restarted, false);
    assert.notEqual(await currentPid(agent), pid);
  });

  test("an interpreter that exits by itself is restarted, and its last output kept", async () => {
    const pid = await currentPid(agent);
    const result = await run(agent, "import os\nprint('bye', flush=True)\nos._exit(1)");
    assert.equal(result.status, "Failed");
    assert.equal(result.restarted, true);
    assert.equal(result.timedOut, false);
    assert.equal(result.stdout, "bye\n");
    assert.deepEqual(result.error, { name: "KernelDied", message: "the interpreter exited with code 1" });
    assert.match(result.stderr, /exited with code 1; it was restarted/);
    assert.ok(!isAlive(pid));
    assertSucceeded(await run(agent, "1"));
    assert.notEqual(await currentPid(agent), pid);
  });

  test("an interpreter that dies while a forked child holds its pipes is seen at once", async () => {
    const pid = await currentPid(agent);
    const result = await run(
      agent,
      "import os, time\nif os.fork() == 0:\n  time.sleep(30)\n  os._exit(0)\nos._exit(4)",
      20_000,
    );
    assert.equal(result.restarted, true);
    assert.equal(result.timedOut, false);
    assert.deepEqual(result.error, { name: "KernelDied", message: "the interpreter exited with code 4" });
    assert.ok(result.durationMs < 5_000, `took ${result.durationMs} ms`);
    assert.ok(!isAlive(pid));
    assertSucceeded(await run(agent, "1"));
  });

  test("an interpreter that dies between executions is reported by the next one", async () => {
    const pid = await currentPid(agent);
    assertSucceeded(
      await run(agent, "import os, threading\nthreading.Timer(0.05, lambda: os._exit(7)).start()"),
    );
    // hello answers once a (new) interpreter is ready; wait for the replacement, bounded.
    for (let i = 0; i < 100 && (await currentPid(agent)) === pid; i++)
      await new Promise((r) => setTimeout(r, 50));
    const next = await run(agent, "1 + 1");
    assertSucceeded(next);
    assert.equal(next.result, 2);
    assert.equal(next.restarted, true);
    assert.match(next.stderr, /exited with code 7 after the previous execution/);
  });

  test("each stream is truncated to maxOutputChars", async () => {
    const result = await run(agent, "import sys\nprint('x' * 5000)\nsys.stderr.write('é' * 30)", 10_000, 100);
    assertSucceeded(result);
    assert.equal(result.stdout, "x".repeat(100));
    assert.equal(result.stdoutTruncated, true);
    assert.equal(result.stderr, "é".repeat(30));
    assert.equal(result.stderrTruncated, false);

    const multibyte = await run(agent, "print('é' * 50)", 10_000, 10);
    assert.equal(multibyte.stdout, "é".repeat(10));
    assert.equal(multibyte.stdoutTruncated, true);

    const none = await run(agent, "print('a')", 10_000, 0);
    assert.equal(none.stdout, "");
    assert.equal(none.stdoutTruncated, true);
  });

  test("a streamed exec sends its output as it is produced, and the same answer", async () => {
    const chunks: OutputChunk[] = [];
    let wrote = false;
    // The code waits for a file that the test writes only once "first" has come: it can only finish if "first"
    // was sent while it was still running.
    const code =
      "import os, sys, time\nprint('first')\nwhile not os.path.exists('go-1'):\n  time.sleep(0.01)\n" +
      "sys.stderr.write('second')\nprint('é' * 3)\n1 / 0";
    const result = await agent.client.exec(
      { code, timeoutMs: 20_000, maxOutputChars: MAX_CHARS },
      {
        onOutput: (chunk) => {
          chunks.push(chunk);
          // print() writes "first" and "\n" separately: they may come in one chunk or two.
          if (!wrote && joined(chunks, "stdout").includes("first\n")) {
            wrote = true;
            void writeFile(join(agent.dataDir, "go-1"), "");
          }
        },
      },
    );
    assert.equal(chunks[0]?.stream, "stdout");
    assert.ok("first\n".startsWith(chunks[0]?.text ?? "-"), "the first line comes before the code goes on");
    assert.equal(result.status, "Failed");
    assert.equal(result.error?.name, "ZeroDivisionError");
    assert.equal(joined(chunks, "stdout"), result.stdout);
    assert.equal(joined(chunks, "stderr"), result.stderr, "the traceback is streamed too");
    assert.equal(result.stdout, `first\n${"é".repeat(3)}\n`);
  });

  test("streamed output is cut at maxOutputChars, as the answer is", async () => {
    const chunks: OutputChunk[] = [];
    const result = await agent.client.exec(
      { code: "print('x' * 50_000)\nprint('after')", timeoutMs: 10_000, maxOutputChars: 100 },
      { onOutput: (chunk) => chunks.push(chunk) },
    );
    assert.equal(result.stdout, "x".repeat(100));
    assert.equal(result.stdoutTruncated, true);
    assert.equal(chunks.map((c) => c.text).join(""), "x".repeat(100));
  });

  test("a streamed exec's notes (a restart) are streamed on stderr", async () => {
    const chunks: OutputChunk[] = [];
    const result = await agent.client.exec(
      {
        code: "import os\nprint('bye', flush=True)\nos._exit(3)",
        timeoutMs: 10_000,
        maxOutputChars: MAX_CHARS,
      },
      { onOutput: (chunk) => chunks.push(chunk) },
    );
    assert.equal(result.restarted, true);
    assert.equal(joined(chunks, "stderr"), result.stderr);
    assert.match(result.stderr, /exited with code 3/);
    assert.equal(joined(chunks, "stdout"), "bye\n");
  });

  test("an endless flood of output is cut without growing the agent's memory", async () => {
    const before = await agentRssKiB(agent);
    const result = await run(agent, "while True:\n  print('x' * 1000)", 1_500, 1_000);
    assert.equal(result.timedOut, true);
    assert.equal(result.stdoutTruncated, true);
    assert.equal(result.stdout, "x".repeat(1_000));
    const grownKiB = (await agentRssKiB(agent)) - before;
    assert.ok(grownKiB < 20 * 1024, `agent RSS grew by ${grownKiB} KiB`);
    assertSucceeded(await run(agent, "1"));
  });

  test("the interpreter runs in the data dir with the Agg backend", async () => {
    const result = await run(agent, "import os\n(os.getcwd(), os.environ.get('MPLBACKEND'))");
    assertSucceeded(result);
    assert.deepEqual(result.result, {
      repr: `(${JSON.stringify(agent.dataDir).replaceAll('"', "'")}, 'Agg')`,
    });
  });

  test("matplotlib figures are returned as PNG images", async () => {
    const figureFree = await run(agent, "[i * i for i in range(3)]");
    assert.deepEqual(figureFree.images, []);
    if (!matplotlibAvailable()) {
      assertSucceeded(figureFree);
      return;
    }
    const result = await run(agent, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()");
    assertSucceeded(result);
    assert.equal(result.stderr, "", "plt.show() is silent under Agg");
    assert.equal(result.images.length, 1);
    const [image] = result.images;
    assert.equal(image?.mime, "image/png");
    assert.deepEqual(
      [...Buffer.from(image?.base64 ?? "", "base64").subarray(0, 4)],
      [0x89, 0x50, 0x4e, 0x47],
    );
    const figureValue = await run(agent, "fig = plt.figure()\nfig.gca().plot([3, 1])\nfig");
    assert.equal(figureValue.result, null);
    assert.equal(figureValue.images.length, 1);
    const closed = await run(agent, "len(plt.get_fignums())");
    assert.equal(closed.result, 0);
    assert.deepEqual(closed.images, []);
  });

  test("files: write, list, stat, read, delete", async () => {
    const client = agent.client;
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const written = await client.writeFile("a.bin", bytes);
    assert.equal(written.name, "a.bin");
    assert.equal(written.directory, "");
    assert.equal(written.type, "file");
    assert.equal(written.sizeBytes, 256);
    assert.ok(Math.abs(written.modifiedAtMs - Date.now()) < 60_000);

    const deep = await client.writeFile("sub/deeper/b.txt", Buffer.from("hello"));
    assert.deepEqual(
      { ...deep, modifiedAtMs: 0 },
      {
        name: "b.txt",
        directory: "sub/deeper",
        type: "file",
        sizeBytes: 5,
        modifiedAtMs: 0,
      },
    );
    await client.writeFile("/mnt/data/sub/c.txt", Buffer.alloc(0));

    const top = await client.listFiles("", false);
    const topNames = top.map((f) => `${f.type}:${f.name}`);
    assert.ok(topNames.includes("file:a.bin"));
    assert.ok(topNames.includes("directory:sub"));
    assert.ok(!topNames.some((n) => n.endsWith("b.txt")));

    const all = await client.listFiles("", true);
    const paths = all.map((f) => (f.directory ? `${f.directory}/${f.name}` : f.name));
    for (const path of ["a.bin", "sub", "sub/c.txt", "sub/deeper", "sub/deeper/b.txt"]) {
      assert.ok(paths.includes(path), `${path} listed`);
    }
    const sub = await client.listFiles("sub", false);
    assert.deepEqual(
      sub.map((f) => [f.directory, f.name, f.type]),
      [
        ["sub", "c.txt", "file"],
        ["sub", "deeper", "directory"],
      ],
    );

    const stat = await client.statFile("sub/deeper/b.txt");
    assert.equal(stat.sizeBytes, 5);
    const read = await client.readFile("a.bin");
    assert.deepEqual(read.data, bytes);
    assert.equal(read.file.sizeBytes, 256);
    assert.deepEqual((await client.readFile("sub/c.txt")).data, Buffer.alloc(0));

    // Larger than the agent reads into memory: streamed by sendfile, and split across many socket reads.
    const large = Buffer.alloc(6 * 1024 * 1024 + 3, 7);
    large.write("head");
    await client.writeFile("large.bin", large);
    assert.ok((await client.readFile("large.bin")).data.equals(large));
    await client.deleteFile("large.bin");

    await assertAgentError(
      client.writeFile("a.bin", Buffer.from("no"), { overwrite: false }),
      "AlreadyExists",
      409,
    );
    assert.deepEqual((await client.readFile("a.bin")).data, bytes);
    await client.writeFile("a.bin", Buffer.from("replaced"));
    const seen = await run(agent, "open('a.bin').read(), sorted(os.listdir('sub'))");
    assert.deepEqual(seen.result, { repr: "('replaced', ['c.txt', 'deeper'])" });

    await assertAgentError(client.readFile("sub"), "NotAFile", 400);
    await assertAgentError(client.listFiles("a.bin", false), "NotADirectory", 400);
    await assertAgentError(client.writeFile("sub", Buffer.from("x")), "NotAFile", 400);
    await assertAgentError(client.deleteFile("sub"), "NotAFile", 400);

    await client.deleteFile("a.bin");
    await assertAgentError(client.statFile("a.bin"), "FileNotFound", 404);
    await assertAgentError(client.readFile("a.bin"), "FileNotFound", 404);
    await assertAgentError(client.deleteFile("a.bin"), "FileNotFound", 404);
    await assertAgentError(client.listFiles("missing", false), "FileNotFound", 404);
    await assertAgentError(client.statFile(""), "BadRequest", 400);
  });

  test("paths that leave the data dir are refused", async () => {
    const client = agent.client;
    const outside = join(agent.dir, "outside.txt");
    await writeFile(outside, "secret");
    for (const path of ["../x", "/etc/passwd", "sub/../../x", "..", "a/../../etc/passwd"]) {
      await assertAgentError(client.readFile(path), "PathOutsideDataDir", 400);
      await assertAgentError(client.statFile(path), "PathOutsideDataDir", 400);
      await assertAgentError(client.writeFile(path, Buffer.from("x")), "PathOutsideDataDir", 400);
      await assertAgentError(client.deleteFile(path), "PathOutsideDataDir", 400);
    }
    await assertAgentError(client.listFiles("..", false), "PathOutsideDataDir", 400);

    // Symlinks made by code in the session.
    const made = await run(
      agent,
      `import os\nos.symlink('/etc/passwd', 'passwd-link')\nos.symlink('/etc', 'etc-dir')\n` +
        `os.symlink(${JSON.stringify(outside)}, 'outside-link')\nos.makedirs('inner', exist_ok=True)\n` +
        `open('inner/ok.txt', 'w').write('inside')\nos.symlink('inner', 'inner-link')`,
    );
    assertSucceeded(made);
    await assertAgentError(client.readFile("passwd-link"), "NotAFile", 400);
    const linkStat = await client.statFile("passwd-link");
    assert.equal(linkStat.type, "file");
    assert.equal(linkStat.sizeBytes, "/etc/passwd".length, "the link's own size, not the target's");
    const listed = await client.listFiles("", false);
    assert.equal(
      listed.find((f) => f.name === "etc-dir")?.type,
      "file",
      "a symlinked dir is listed as a file",
    );

    await assertAgentError(client.readFile("etc-dir/passwd"), "PathOutsideDataDir", 400);
    await assertAgentError(client.statFile("etc-dir/passwd"), "PathOutsideDataDir", 400);
    await assertAgentError(client.listFiles("etc-dir", false), "PathOutsideDataDir", 400);
    await assertAgentError(client.writeFile("etc-dir/x", Buffer.from("x")), "PathOutsideDataDir", 400);
    await assertAgentError(client.deleteFile("etc-dir/passwd"), "PathOutsideDataDir", 400);

    // Writing over a link replaces the link; the file it pointed to is untouched.
    await client.writeFile("outside-link", Buffer.from("mine"));
    assert.equal(await readFile(outside, "utf8"), "secret");
    assert.equal((await client.readFile("outside-link")).data.toString(), "mine");
    // Deleting a link removes the link only.
    await client.deleteFile("passwd-link");
    await access("/etc/passwd");

    // A symlinked directory that stays inside the data dir is followed.
    assert.equal((await client.readFile("inner-link/ok.txt")).data.toString(), "inside");
    const recursive = await client.listFiles("", true);
    assert.ok(!recursive.some((f) => f.directory.startsWith("etc-dir")), "links are never descended");
  });

  test("file and metadata requests are answered while an execution runs", async () => {
    // The execution waits for a file that only the file API creates: it cannot finish before the file requests.
    let finished = false;
    const blocked = run(
      agent,
      "import os, time\nwhile not os.path.exists('release.txt'): time.sleep(0.01)\nos.remove('release.txt')\n'released'",
      60_000,
    ).then((result) => {
      finished = true;
      return result;
    });
    await agent.client.writeFile("during.txt", Buffer.from("x"));
    assert.equal((await agent.client.statFile("during.txt")).sizeBytes, 1);
    assert.ok((await agent.client.listFiles("", false)).some((f) => f.name === "during.txt"));
    assert.equal((await agent.client.metadata()).kernel.name, "sessionpool-python");
    assert.equal(finished, false);
    await agent.client.writeFile("release.txt", Buffer.alloc(0));
    const result = await blocked;
    assertSucceeded(result);
    assert.equal(result.result, "released");
  });

  test("execs are serialized in order when pipelined", async () => {
    const results = await Promise.all([
      run(agent, "seq = []"),
      run(agent, "seq.append(1)"),
      run(agent, "seq.append(2)"),
      run(agent, "seq"),
    ]);
    assert.deepEqual(results[3]?.result, { repr: "[1, 2]" });
  });

  test("metadata lists the runtime and the installed packages", async () => {
    const meta = await agent.client.metadata();
    assert.equal(meta.runtimes.length, 1);
    assert.equal(meta.runtimes[0]?.name, "python");
    assert.match(meta.runtimes[0]?.version ?? "", /^3\.\d+\.\d+/);
    assert.deepEqual(meta.kernel, { name: "sessionpool-python", version: "1" });
    const names = meta.packages.map((p) => p.name.toLowerCase());
    assert.deepEqual(names, [...names].sort());
    assert.equal(new Set(names).size, names.length, "no duplicates");
    for (const p of meta.packages) {
      assert.equal(typeof p.name, "string");
      assert.equal(typeof p.version, "string");
    }
    assert.ok(names.includes("pip") || names.length > 0);
    assert.deepEqual(await agent.client.metadata(), meta, "cached");
  });

  test("a dropped connection is attached again with the agent's key, and the state is kept", async () => {
    assertSucceeded(await run(agent, "z = 7"));
    const old = agent.client;
    const fresh = await reattach(agent);
    assert.notEqual(fresh, old);
    assert.equal(old.closed, true);
    assert.equal((await run(agent, "z")).result, 7);
  });

  test("once its agent has attached, an attach without the key or with a wrong one is refused", async () => {
    const attached = agent.client;
    for (const key of [null, "wrong", `${agent.key}x`, 42]) {
      const sock = connect(agent.socketPath);
      await once(sock, "connect");
      let received = 0;
      sock.on("data", (d: Buffer) => (received += d.length));
      const closed = once(sock, "close");
      sock.write(frame({ op: "attach", version: "2", kernel: "python", key }));
      await closed;
      assert.equal(received, 0, `an attach with key ${JSON.stringify(key)} got no answer`);
    }
    // Garbage and an oversized first frame are refused the same way.
    for (const bytes of [Buffer.from("GET / HTTP/1.1\r\n\r\n"), Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])]) {
      const sock = connect(agent.socketPath);
      await once(sock, "connect");
      const closed = once(sock, "close");
      sock.write(bytes);
      await closed;
    }
    assert.equal(agent.endpoint.client, attached, "the agent's own connection is untouched");
    assert.equal((await run(agent, "z")).result, 7);
  });

  test("malformed frames get an error answer or close the connection, never crash the agent", async () => {
    // Play the server: stop the endpoint, let the agent attach to a raw listener, and send it bad frames.
    await agent.endpoint.close();
    const raw = createServer();
    await new Promise<void>((resolve) => raw.listen(agent.socketPath, resolve));
    const [sock] = (await once(raw, "connection")) as [Socket];
    const frames: Record<string, unknown>[] = [];
    let buffered = Buffer.alloc(0);
    sock.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 8) {
        const total = 8 + buffered.readUInt32BE(0) + buffered.readUInt32BE(4);
        if (buffered.length < total) break;
        frames.push(JSON.parse(buffered.subarray(8, 8 + buffered.readUInt32BE(0)).toString()));
        buffered = buffered.subarray(total);
      }
    });
    // Once raw stops listening: a connection it accepted and nobody reads (the agent attaching again) would keep
    // raw.close() waiting for ever.
    let rawClosed: Promise<void> | undefined;
    const closeRaw = (): Promise<void> => {
      rawClosed ??= new Promise<void>((resolve) => raw.close(() => resolve()));
      return rawClosed;
    };
    const send = (header: string, payload = Buffer.alloc(0)): void => {
      const prefix = Buffer.alloc(8);
      prefix.writeUInt32BE(Buffer.byteLength(header), 0);
      prefix.writeUInt32BE(payload.length, 4);
      sock.write(Buffer.concat([prefix, Buffer.from(header), payload]));
    };
    try {
      for (let i = 0; i < 200 && frames.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(
        { op: frames[0]?.op, key: frames[0]?.key },
        { op: "attach", key: agent.key },
        "the agent attaches again with the key it was given",
      );
      frames.length = 0;
      send(JSON.stringify({ ok: true, key: agent.key }));
      send("{not json", Buffer.from("payload is skipped"));
      send(JSON.stringify({ id: 1, op: "nope" }));
      send(JSON.stringify({ id: 2, op: "exec", code: 42 }));
      send(JSON.stringify({ op: "hello" }));
      send(JSON.stringify({ id: 3, op: "exec", code: "1", timeoutMs: -1 }));
      send(JSON.stringify({ id: 4, op: "files.read", path: 5 }));
      send("[1, 2]");
      send(JSON.stringify({ id: 5, op: "hello" }));
      for (let i = 0; i < 200 && frames.length < 8; i++) await new Promise((r) => setTimeout(r, 10));
      const byId = (id: number) => frames.filter((f) => f.id === id);
      assert.equal(frames.length, 8, JSON.stringify(frames));
      assert.equal(byId(0).length, 3, "bad JSON, no id, a non-object header: answered with id 0");
      for (const id of [0, 1, 2, 3, 4]) {
        for (const frame of byId(id)) {
          assert.equal(frame.ok, false);
          assert.equal((frame.error as { code: string }).code, "BadRequest");
        }
      }
      assert.equal(byId(5)[0]?.ok, true);

      // Broken framing (an absurd header length) closes the connection. raw stops listening first: the agent
      // attaches again as soon as its connection is closed.
      const stopped = closeRaw();
      const closed = once(sock, "close");
      sock.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
      await closed;
      await stopped;
    } finally {
      const stopped = closeRaw();
      sock.destroy();
      await stopped;
    }
    agent.endpoint = await AgentEndpoint.listen(agent.socketPath, {
      key: agent.key,
      trustFirstAttach: false,
    });
    const { client } = await waitForAgent(agent.endpoint, { timeoutMs: 10_000 });
    agent.client = client;
    assert.equal((await run(agent, "z")).result, 7, "the interpreter state survived");
  });

  test("client deadlines, aborts and close", async () => {
    const client = agent.client;
    await assert.rejects(
      client.exec(
        { code: "import time; time.sleep(0.5)", timeoutMs: 5_000, maxOutputChars: 100 },
        { timeoutMs: 50 },
      ),
      AgentTimeoutError,
    );
    const aborted = new AbortController();
    const pending = client.exec(
      { code: "1", timeoutMs: 5_000, maxOutputChars: 100 },
      { signal: aborted.signal },
    );
    aborted.abort(new Error("caller gave up"));
    await assert.rejects(pending, /caller gave up/);
    await assert.rejects(client.hello({ signal: AbortSignal.abort() }), { name: "AbortError" });
    // The late answers are ignored and the connection still works.
    assert.equal((await run(agent, "2 + 2")).result, 4);

    const other = await reattach(agent);
    await other.hello();
    other.close();
    other.close();
    await assert.rejects(other.hello(), AgentUnavailableError);
    const { client: again } = await waitForAgent(agent.endpoint, { timeoutMs: 10_000 });
    agent.client = again;
  });
});

describe("python agent lifecycle", () => {
  test("waitForAgent gives up with AgentUnavailable when no agent attaches", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sp-agent-"));
    const endpoint = await AgentEndpoint.listen(join(dir, "none.sock"), { key: "k", trustFirstAttach: true });
    try {
      await assert.rejects(waitForAgent(endpoint, { timeoutMs: 200 }), (err: unknown) => {
        assert.ok(err instanceof AgentUnavailableError);
        assert.equal(err.code, "AgentUnavailable");
        assert.equal(err.statusCode, 503);
        return true;
      });
    } finally {
      endpoint.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("waitForAgent stops when its signal aborts", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sp-agent-"));
    const endpoint = await AgentEndpoint.listen(join(dir, "none.sock"), { key: "k", trustFirstAttach: true });
    try {
      const controller = new AbortController();
      const waiting = waitForAgent(endpoint, { timeoutMs: 30_000, signal: controller.signal });
      controller.abort(new Error("shutting down"));
      await assert.rejects(waiting, /shutting down/);
    } finally {
      endpoint.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("SESSIONPOOL_FORK_KERNEL=0 starts the first interpreter afresh (gVisor sandboxes)", async () => {
    const agent = await startAgent({ SESSIONPOOL_FORK_KERNEL: "0" });
    try {
      const { pid } = await agent.client.hello();
      assert.match(await readFile(`/proc/${pid}/cmdline`, "utf8"), /kernel\.py/);
      const result = await run(agent, "1 + 1");
      assertSucceeded(result);
      assert.equal(result.result, 2);
    } finally {
      await stopAgent(agent);
    }
  });

  test("hello answers only once the interpreter has loaded its preloads", async () => {
    const modules = await mkdtemp(join(tmpdir(), "sp-agent-mods-"));
    const marker = join(modules, "preloaded");
    let agent: RunningAgent | undefined;
    try {
      await writeFile(
        join(modules, "slow_preload.py"),
        `import pathlib, time\ntime.sleep(0.5)\npathlib.Path(${JSON.stringify(marker)}).write_text("done")\n`,
      );
      agent = await startAgent({ SESSIONPOOL_PRELOAD: "slow_preload", PYTHONPATH: modules });
      await access(marker); // waitForAgent resolved on hello: the preload had finished by then
      const loaded = await run(agent, "import sys\n'slow_preload' in sys.modules");
      assert.equal(loaded.result, true);
    } finally {
      if (agent !== undefined) await stopAgent(agent);
      await rm(modules, { recursive: true, force: true });
    }
  });

  test("socket mode, a killed agent's interpreter exits, a new agent attaches anew, SIGTERM ends the interpreter", async () => {
    const first = await startAgent({ SESSIONPOOL_PRELOAD: "json, no_such_module_xyz" });
    let second: RunningAgent | undefined;
    try {
      assert.equal((await stat(first.socketPath)).mode & 0o777, 0o600);
      assertSucceeded(await run(first, "import sys\nassert 'json' in sys.modules"));
      const firstKernel = await currentPid(first);

      // A killed agent's idle interpreter notices and exits by itself.
      first.child.kill("SIGKILL");
      await once(first.child, "exit");
      for (let i = 0; i < 100 && isAlive(firstKernel); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(!isAlive(firstKernel), "the orphaned interpreter exited");
      await first.endpoint.close();

      second = await startHostAgent({ dir: first.dir });
      assertSucceeded(await run(second, "1"));
      const secondKernel = await currentPid(second);
      await stopAgent(second, { removeDir: false });
      assert.equal(second.child.exitCode, 0, second.stderr.join(""));
      assert.ok(!isAlive(secondKernel), "SIGTERM took the interpreter down");
    } finally {
      if (second !== undefined) await stopAgent(second, { removeDir: false });
      await stopAgent(first);
    }
  });
});
