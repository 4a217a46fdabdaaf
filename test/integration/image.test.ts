// The PythonLTS sandbox image built by scripts/build-images.sh, checked against the real engine:
// tags and labels, the recipe hash (re-derived here in TypeScript from the rule documented at the top of
// the script), and what runs inside (uid 1000, read-only root, the scientific Python stack, the agent's modules,
// the Node.js kernel's parser).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BUILD_SCRIPT = join(ROOT, "scripts/build-images.sh");

interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command with a bounded time; rejects with its stderr on failure or timeout. */
function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      cmd,
      args,
      { cwd: ROOT, timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 32 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
          return;
        }
        resolvePromise({ stdout, stderr });
      },
    );
  });
}

// ---- the hashing rule of scripts/build-images.sh, in TypeScript ------------------------------------

function sha256hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function section(script: string, name: string): string {
  const lines = script.split("\n");
  const start = lines.indexOf(`# >>> ${name}`);
  const end = start < 0 ? -1 : lines.indexOf(`# <<< ${name}`, start + 1);
  if (start < 0 || end < 0) throw new Error(`section ${name} not found in build-images.sh`);
  return lines.slice(start, end + 1).join("\n") + "\n";
}

function agentFiles(agentDir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(join(agentDir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (entry.name.startsWith(".") || ["__pycache__", "tests", "test"].includes(entry.name)) continue;
        walk(path);
      } else if (entry.isFile()) {
        const n = entry.name;
        if (n.startsWith(".") || /^test_.*\.py$/.test(n) || /_test\.py$/.test(n)) continue;
        if (n === "conftest.py" || /\.py[co]$/.test(n)) continue;
        out.push(path);
      }
    }
  };
  walk("");
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function recipeRefs(root: string): { base: string; final: string } {
  const script = readFileSync(join(root, "scripts/build-images.sh"), "utf8");
  const agentDir = join(root, "sandbox-agent");
  const baseManifest =
    "sessionpool-python-base v1\n" +
    `file image/packages.txt ${sha256hex(readFileSync(join(agentDir, "image/packages.txt")))}\n` +
    `section BASE ${sha256hex(section(script, "BASE RECIPE"))}\n`;
  const baseHash = sha256hex(baseManifest).slice(0, 12);
  let finalManifest =
    "sessionpool-python v1\n" +
    `base ${baseHash}\n` +
    `section FINAL ${sha256hex(section(script, "FINAL RECIPE"))}\n`;
  for (const f of agentFiles(agentDir))
    finalManifest += `file ${f} ${sha256hex(readFileSync(join(agentDir, f)))}\n`;
  const hash = sha256hex(finalManifest).slice(0, 12);
  return { base: `sessionpool/python-base:${baseHash}`, final: `sessionpool/python:${hash}` };
}

// ---- the image -------------------------------------------------------------------------------------

interface ImageInspect {
  Id: string;
  Config: {
    User: string;
    WorkingDir: string;
    Env: string[] | null;
    Cmd: string[] | null;
    Labels: Record<string, string> | null;
  };
}

async function inspectImage(ref: string): Promise<ImageInspect> {
  const { stdout } = await run("docker", ["image", "inspect", ref]);
  const parsed = JSON.parse(stdout) as ImageInspect[];
  assert.equal(parsed.length, 1);
  return parsed[0]!;
}

/** Runs a container to completion with the sandbox's restrictions; always removes it. */
async function runSandboxed(ref: string, argv: string[], timeoutMs = 180_000): Promise<RunResult> {
  const { stdout: created } = await run("docker", [
    "create",
    "--network",
    "none",
    "--read-only",
    "--user",
    "1000:1000",
    "--tmpfs",
    "/tmp:rw,nosuid,nodev,size=64m",
    "--tmpfs",
    "/mnt/data:rw,nosuid,nodev,size=64m,uid=1000,gid=1000,mode=0755",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--pids-limit",
    "256",
    "--memory",
    "1g",
    "--label",
    "io.sessionpool.test=image.test",
    ref,
    ...argv,
  ]);
  const id = created.trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  try {
    return await run("docker", ["start", "--attach", id], timeoutMs);
  } finally {
    await run("docker", ["rm", "--force", "--volumes", id]).catch(() => undefined);
  }
}

const PROBE = `
import errno, glob, importlib.util, json, os, sys
out = {"uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(), "cwd": os.getcwd(),
       "dont_write_bytecode": sys.flags.dont_write_bytecode, "home": os.environ.get("HOME")}
try:
    open("/usr/sessionpool-probe", "w").close()
    out["root_write"] = "ok"
except OSError as e:
    out["root_write"] = errno.errorcode.get(e.errno, str(e.errno))
for d in ("/tmp", "/mnt/data"):
    with open(os.path.join(d, "probe.txt"), "w") as f:
        f.write("x")
out["writable"] = ["/tmp", "/mnt/data"]
import numpy, pandas, scipy, scipy.optimize, scipy.stats, sklearn, sklearn.linear_model, IPython, PIL
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [3, 1, 2])
plt.savefig("/tmp/plot.png")
out["png_bytes"] = os.path.getsize("/tmp/plot.png")
m = numpy.array([[2.0, 1.0], [1.0, 3.0]])
out["det"] = round(float(numpy.linalg.det(m)), 6)
df = pandas.DataFrame({"a": [1, 2, 3]})
out["pandas_sum"] = int(df["a"].sum())
model = sklearn.linear_model.LinearRegression().fit([[0], [1], [2]], [1, 3, 5])
out["slope"] = round(float(model.coef_[0]), 6)
out["versions"] = {"python": sys.version.split()[0], "numpy": numpy.__version__, "pandas": pandas.__version__,
                   "matplotlib": matplotlib.__version__, "scipy": scipy.__version__,
                   "sklearn": sklearn.__version__, "IPython": IPython.__version__}
agent = sorted(glob.glob("/opt/sessionpool/agent/**/*.py", recursive=True))
out["agent_files"] = [os.path.relpath(p, "/opt/sessionpool/agent") for p in agent]
out["agent_uncompiled"] = [p for p in agent if not os.path.exists(importlib.util.cache_from_source(p))]
print(json.dumps(out))
`;

describe("python sandbox image", { timeout: 600_000 }, () => {
  let ref = "";
  let image: ImageInspect;

  before(async () => {
    await run("docker", ["info"], 30_000).catch((err: unknown) => {
      throw new Error(`no Docker engine answers (run: bash scripts/ensure-docker.sh): ${String(err)}`);
    });
    ref = (await run("bash", [BUILD_SCRIPT, "--print-ref"])).stdout.trim();
    image = await inspectImage(ref).catch((err: unknown) => {
      throw new Error(`image ${ref} does not exist (run: bash scripts/build-images.sh): ${String(err)}`);
    });
  });

  test("--print-ref names the image that exists, and the documented hash rule reproduces it", async () => {
    assert.match(ref, /^sessionpool\/python:[0-9a-f]{12}$/);
    const refs = recipeRefs(ROOT);
    assert.equal(refs.final, ref);
    const baseRef = (await run("bash", [BUILD_SCRIPT, "--print-base-ref"])).stdout.trim();
    assert.equal(refs.base, baseRef);
    const base = await inspectImage(baseRef);
    assert.equal(base.Config.Labels?.["io.sessionpool.image-kind"], "python-base");
    assert.equal(base.Config.Labels?.["io.sessionpool.recipe-hash"], baseRef.split(":")[1]);
  });

  test("carries the expected labels and run-time config, and :latest points at it", async () => {
    const hash = ref.split(":")[1]!;
    assert.equal(image.Config.Labels?.["io.sessionpool.recipe-hash"], hash);
    assert.equal(image.Config.Labels?.["io.sessionpool.image-kind"], "python");
    assert.equal(image.Config.User, "1000:1000");
    assert.equal(image.Config.WorkingDir, "/mnt/data");
    assert.deepEqual(image.Config.Cmd, ["python3", "-u", "/opt/sessionpool/agent/agent.py"]);
    const env = image.Config.Env ?? [];
    for (const kv of [
      "MPLBACKEND=Agg",
      "PYTHONDONTWRITEBYTECODE=1",
      "HOME=/tmp",
      "MPLCONFIGDIR=/tmp/matplotlib",
    ]) {
      assert.ok(env.includes(kv), `image env lacks ${kv}: ${env.join(" ")}`);
    }
    const latest = await inspectImage("sessionpool/python:latest");
    assert.equal(latest.Id, image.Id);
  });

  test("runs as uid 1000 on a read-only root with numpy, pandas, matplotlib, scipy, sklearn, IPython", async () => {
    const { stdout, stderr } = await runSandboxed(ref, ["python3", "-c", PROBE]);
    const line = stdout.trim().split("\n").at(-1) ?? "";
    let out: Record<string, unknown>;
    try {
      out = JSON.parse(line) as Record<string, unknown>;
    } catch {
      assert.fail(`probe printed no JSON.\nstdout: ${stdout}\nstderr: ${stderr}`);
    }
    assert.equal(out["uid"], 1000);
    assert.equal(out["gid"], 1000);
    assert.equal(out["euid"], 1000);
    assert.equal(out["cwd"], "/mnt/data");
    assert.equal(out["home"], "/tmp");
    assert.equal(out["dont_write_bytecode"], 1);
    assert.equal(out["root_write"], "EROFS");
    assert.ok((out["png_bytes"] as number) > 1000, "matplotlib wrote no PNG");
    assert.equal(out["det"], 5);
    assert.equal(out["pandas_sum"], 6);
    assert.equal(out["slope"], 2);
    const agentModules = agentFiles(join(ROOT, "sandbox-agent")).filter((f) => f.endsWith(".py"));
    assert.ok(agentModules.includes("agent.py"));
    assert.deepEqual(
      out["agent_files"],
      agentModules,
      "the image has the agent's modules, no more, no fewer",
    );
    assert.deepEqual(out["agent_uncompiled"], [], "agent modules without a precompiled .pyc");
  });

  test("the Node.js kernel finds acorn (Debian's node-acorn) with the image's Node.js", async () => {
    const { stdout, stderr } = await runSandboxed(ref, [
      "node",
      "-e",
      "const k = require('/opt/sessionpool/agent/node_kernel.js');" +
        "process.stdout.write(JSON.stringify([k.rerunnableScript('let a = 1'), k.asyncScript('await 1')]))",
    ]);
    assert.deepEqual(JSON.parse(stdout), ["var a = 1", "(async () => { return (await 1)\n})()"], stderr);
  });
});
