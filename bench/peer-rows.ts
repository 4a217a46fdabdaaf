// The rows beside sessionpool: the naive way (`docker run` per request), a real peer (Jupyter's own kernel from
// Debian's packages) and the physical floor (a warm Python process over a pipe, a loopback HTTP round trip).
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import type { Plan, Row } from "./plan.ts";
import { run, spawnTracked, stop } from "./processes.ts";
import { summarize } from "./stats.ts";

export const SANDBOX_IMAGE = "sessionpool/python:latest";
/** Debian's interpreter: Debian's Jupyter packages live in its dist-packages, not in a pyenv or venv. */
const DEBIAN_PYTHON = "/usr/bin/python3";
const JUPYTER_PACKAGES = ["python3-ipykernel", "python3-jupyter-client"];
/** Kernel specs start `python3` from PATH: Debian's must come first. */
const DEBIAN_PATH = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin";

export async function measureNaiveDockerRun(plan: Plan): Promise<Row> {
  const label = `docker run --rm --network none ${SANDBOX_IMAGE} python3 -c "print(1+1)"`;
  const samples: number[] = [];
  const deadline = performance.now() + Math.max(60_000, plan.naiveSamples * 10_000);
  for (let i = 0; i < plan.naiveSamples && performance.now() < deadline; i++) {
    const r = await run(
      "docker",
      ["run", "--rm", "--network", "none", SANDBOX_IMAGE, "python3", "-c", "print(1+1)"],
      { timeoutMs: 60_000 },
    );
    if (r.code !== 0 || r.stdout.trim() !== "2") {
      throw new Error(
        `docker run answered ${r.code}${r.timedOut ? " (timed out)" : ""}: ${r.stdout}${r.stderr}`,
      );
    }
    samples.push(r.ms);
  }
  return {
    id: "naive-docker-run",
    group: "naive",
    label: "Naive: docker run --rm per request",
    latency: summarize(samples),
    note: label,
  };
}

/** Installs Debian's Jupyter packages when absent (and allowed); returns why Jupyter is unavailable, if it is. */
async function ensureJupyter(plan: Plan): Promise<string | undefined> {
  const probe = () =>
    run(DEBIAN_PYTHON, ["-c", "import ipykernel, jupyter_client"], { timeoutMs: 60_000 }).catch(
      (err: Error) => ({ code: -1, stderr: err.message }) as const,
    );
  if ((await probe()).code === 0) return undefined;
  if (!plan.installJupyter)
    return `Debian's ${JUPYTER_PACKAGES.join(" and ")} are not installed (${plan.mode} mode does not install them)`;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  process.stderr.write(`bench: installing ${JUPYTER_PACKAGES.join(" ")} with apt-get (once)\n`);
  let install = await run(
    "apt-get",
    ["install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=120", ...JUPYTER_PACKAGES],
    {
      timeoutMs: 300_000,
      env,
    },
  ).catch((err: Error) => ({ code: -1, stdout: "", stderr: err.message, timedOut: false }));
  if (install.code !== 0) {
    // The package lists may be missing or stale: refresh once and try again.
    await run("apt-get", ["update"], { timeoutMs: 180_000, env }).catch(() => undefined);
    install = await run(
      "apt-get",
      ["install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=120", ...JUPYTER_PACKAGES],
      {
        timeoutMs: 300_000,
        env,
      },
    ).catch((err: Error) => ({ code: -1, stdout: "", stderr: err.message, timedOut: false }));
  }
  if (install.code !== 0) {
    const tail = `${install.stdout}${install.stderr}`.trim().split("\n").slice(-2).join(" / ");
    return `apt-get install ${JUPYTER_PACKAGES.join(" ")} failed: ${tail}`;
  }
  return (await probe()).code === 0
    ? undefined
    : "Jupyter packages installed but not importable by /usr/bin/python3";
}

/** Jupyter's kernel through jupyter_client (ZMQ on loopback): kernel start, start + first result, execute. */
export async function measureJupyter(plan: Plan): Promise<Row[]> {
  const labels = {
    start: "Jupyter: kernel start (start_kernel + wait_for_ready)",
    first: "Jupyter: kernel start -> first result of 1+1",
    exec: "Jupyter: 1+1 on a warm kernel (jupyter_client, ZMQ)",
  };
  const unavailable = (reason: string): Row[] => [
    { id: "jupyter-kernel-start", group: "peer", label: labels.start, unavailable: reason },
    { id: "jupyter-start-first-result", group: "peer", label: labels.first, unavailable: reason },
    { id: "jupyter-execute", group: "peer", label: labels.exec, unavailable: reason },
  ];
  const missing = await ensureJupyter(plan);
  if (missing) return unavailable(missing);
  const driver = join(import.meta.dirname, "jupyter_driver.py");
  const r = await run(DEBIAN_PYTHON, [driver, String(plan.jupyterStarts), String(plan.jupyterExecs)], {
    timeoutMs: 60_000 + plan.jupyterStarts * 30_000 + plan.jupyterExecs * 200,
    env: { ...process.env, PATH: DEBIAN_PATH, PYTHONNOUSERSITE: "1" },
  });
  if (r.code !== 0) {
    return unavailable(
      `the Jupyter driver failed (${r.timedOut ? "timed out" : `exit ${r.code}`}): ${r.stderr.trim().split("\n").slice(-1)[0] ?? ""}`,
    );
  }
  const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
    kernelStartMs: number[];
    firstResultMs: number[];
    executeMs: number[];
    versions: Record<string, string>;
  };
  const versions = Object.entries(out.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return [
    {
      id: "jupyter-kernel-start",
      group: "peer",
      label: labels.start,
      latency: summarize(out.kernelStartMs),
      note: versions,
    },
    {
      id: "jupyter-start-first-result",
      group: "peer",
      label: labels.first,
      latency: summarize(out.firstResultMs),
      note: "the peer's equivalent of a new session's first result",
    },
    { id: "jupyter-execute", group: "peer", label: labels.exec, latency: summarize(out.executeMs) },
  ];
}

const PIPE_SERVER = `
import sys
for line in sys.stdin:
    sys.stdout.write(repr(eval(compile(line, "<bench>", "eval"))) + "\\n")
    sys.stdout.flush()
`;

/**
 * The warm-claim samples each follow a quiet pool (the refill done, then SETTLE_MS): on this kind of machine a
 * process woken after such a pause answers several times slower than in a tight loop. The floor is measured the
 * same way too, so the warm claim is compared with a floor under the same conditions.
 */
const PAUSE_MS = 150;

async function afterPause(plan: Plan, ask: () => Promise<void>): Promise<number[]> {
  const samples: number[] = [];
  const n = Math.min(30, plan.floorSamples);
  for (let i = 0; i < n; i++) {
    await sleep(PAUSE_MS);
    const t = performance.now();
    await ask();
    samples.push(performance.now() - t);
  }
  return samples;
}

/** A warm Python process answering `1+1` over stdin/stdout pipes: the interpreter's round-trip floor. */
export async function measurePythonPipe(plan: Plan): Promise<Row> {
  const child = spawnTracked(DEBIAN_PYTHON, ["-u", "-c", PIPE_SERVER]);
  try {
    const lines = createInterface({ input: child.stdout! });
    const iterator = lines[Symbol.asyncIterator]();
    const ask = async () => {
      child.stdin!.write("1+1\n");
      const next = await iterator.next();
      if (next.done || next.value !== "2") throw new Error(`the pipe answered ${String(next.value)}`);
    };
    for (let i = 0; i < 50; i++) await ask();
    const samples: number[] = [];
    const deadline = performance.now() + 60_000;
    for (let i = 0; i < plan.floorSamples && performance.now() < deadline; i++) {
      const t = performance.now();
      await ask();
      samples.push(performance.now() - t);
    }
    const paused = await afterPause(plan, ask);
    lines.close();
    return {
      id: "floor-python-pipe",
      group: "floor",
      label: "Floor: warm Python process, 1+1 over a pipe",
      latency: summarize(samples),
      values: { afterPauseP50Ms: summarize(paused).p50Ms },
      note: `afterPause: each sample after ${PAUSE_MS} ms of quiet, as the warm-claim samples are`,
    };
  } finally {
    stop(child);
  }
}

/** A loopback HTTP/1.1 keep-alive round trip, Node client (undici, as the bench uses) to a Node server. */
export async function measureHttpLoopback(plan: Plan): Promise<Row> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": "1" });
    res.end("2");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const agent = new Agent({ connections: 1, keepAliveTimeout: 60_000 });
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const once1 = async () => {
      const res = await request(url, { dispatcher: agent });
      await res.body.text();
    };
    for (let i = 0; i < 50; i++) await once1();
    const samples: number[] = [];
    const deadline = performance.now() + 60_000;
    for (let i = 0; i < plan.floorSamples && performance.now() < deadline; i++) {
      const t = performance.now();
      await once1();
      samples.push(performance.now() - t);
    }
    const paused = await afterPause(plan, once1);
    return {
      id: "floor-http-keepalive",
      group: "floor",
      label: "Floor: loopback HTTP keep-alive round trip (Node)",
      latency: summarize(samples),
      values: { afterPauseP50Ms: summarize(paused).p50Ms },
      note: `afterPause: each sample after ${PAUSE_MS} ms of quiet, as the warm-claim samples are`,
    };
  } finally {
    await agent.close();
    server.closeAllConnections();
    server.close();
  }
}
