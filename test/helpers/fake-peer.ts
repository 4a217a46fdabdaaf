// A Unix-socket peer a test scripts by hand, standing where an agent would be: the agent client's tests use it
// to send what a broken or hostile agent might.
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentClient } from "../../src/agent-channel/agent-client.ts";

export interface FakePeer {
  dir: string;
  socketPath: string;
  /** What the peer does with each new connection. */
  onConnection: (socket: Socket) => void;
  /** A client on a fresh connection to the peer. */
  client(): Promise<AgentClient>;
  close(): Promise<void>;
}

export async function startFakePeer(prefix: string): Promise<FakePeer> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const socketPath = join(dir, "agent.sock");
  const server = createServer((socket) => peer.onConnection(socket));
  const peer: FakePeer = {
    dir,
    socketPath,
    onConnection: () => {},
    async client() {
      const socket = connect(socketPath);
      await once(socket, "connect");
      return new AgentClient(socket);
    },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return peer;
}
