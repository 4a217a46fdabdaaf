// The in-sandbox agent (sandbox-agent/agent.py) run directly on the host, no Docker, attached to a real
// AgentEndpoint as the server attaches sandboxes: shared by the agent and kernel test suites.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentClient } from "../../src/agent-channel/agent-client.ts";
import { AgentEndpoint, agentKey, waitForAgent } from "../../src/agent-channel/agent-endpoint.ts";

export const PYTHON = process.env.SESSIONPOOL_TEST_PYTHON ?? "python3";
export const AGENT_PATH = fileURLToPath(new URL("../../sandbox-agent/agent.py", import.meta.url));
const START_TIMEOUT_MS = 60_000;

export interface HostAgent {
  dir: string;
  dataDir: string;
  socketPath: string;
  /** The key the endpoint gives the agent on its first attach. */
  key: string;
  endpoint: AgentEndpoint;
  child: ChildProcess;
  /** The attached connection (reassigned by tests that make the agent attach again). */
  client: AgentClient;
  /** Interpreter pids seen and processes tests started: killed at the end if still there (see stopHostAgent). */
  pids: Set<number>;
  stderr: string[];
}

export interface HostAgentOptions {
  env?: Record<string, string>;
  /** Reuse a directory (and its data dir) of an earlier agent. */
  dir?: string;
}

/** Listens where the agent connects, starts the agent, and waits for its attach and hello. */
export async function startHostAgent(options: HostAgentOptions = {}): Promise<HostAgent> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "sp-agent-")));
  const dataDir = join(dir, "data");
  const socketPath = join(dir, "run", "agent.sock");
  await mkdir(dirname(socketPath), { recursive: true });
  const key = agentKey("test secret", dir);
  const endpoint = await AgentEndpoint.listen(socketPath, { key, trustFirstAttach: true });
  // As the image runs it (scripts/build-images.sh): with `-u` the agent forks its first interpreter.
  const child = spawn(PYTHON, ["-u", AGENT_PATH], {
    env: {
      ...process.env,
      // The Node.js kernel is found on PATH: put the node under test first.
      PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`,
      ...options.env,
      SESSIONPOOL_AGENT_SOCKET: socketPath,
      SESSIONPOOL_DATA_DIR: dataDir,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr?.setEncoding("utf8").on("data", (text: string) => stderr.push(text));
  const agent: HostAgent = {
    dir,
    dataDir,
    socketPath,
    key,
    endpoint,
    child,
    client: undefined as unknown as AgentClient,
    pids: new Set(),
    stderr,
  };
  try {
    const { client, hello } = await waitForAgent(endpoint, { timeoutMs: START_TIMEOUT_MS });
    agent.client = client;
    if (hello.pid !== child.pid) agent.pids.add(hello.pid);
    return agent;
  } catch (err) {
    await stopHostAgent(agent);
    throw new Error(`the agent did not start; its stderr:\n${stderr.join("")}`, { cause: err });
  }
}

/** Drops the server's side of the connection and waits for the agent to attach again; the new connection. */
export async function reattach(agent: HostAgent): Promise<AgentClient> {
  agent.client.close();
  const { client } = await waitForAgent(agent.endpoint, { timeoutMs: 10_000 });
  agent.client = client;
  return client;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGTERM (the agent then kills its interpreter); SIGKILL if that fails; then any process of this agent left
 * behind (its command line names the data dir, or it is a test's `sleep`).
 */
export async function stopHostAgent(agent: HostAgent, options: { removeDir?: boolean } = {}): Promise<void> {
  await agent.endpoint.close();
  const { child } = agent;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
  for (const pid of agent.pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes(agent.dataDir) && !cmdline.startsWith("sleep\0")) continue;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  }
  if (options.removeDir !== false) await rm(agent.dir, { recursive: true, force: true });
}
