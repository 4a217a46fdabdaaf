// The agent client against a peer that does not behave like our agent (a broken or replaced agent): it may not
// make the server buffer without bound, and what the caller is told never names the socket's host path.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type FakePeer, startFakePeer } from "../helpers/fake-peer.ts";

let peer: FakePeer;
before(async () => {
  peer = await startFakePeer("sessionpool-agent-client-");
});
after(async () => {
  await peer.close();
});

describe("agent client", () => {
  it("drops a peer that announces a frame larger than any agent sends", async () => {
    let received = 0;
    peer.onConnection = (socket) => {
      // Whatever is asked: a 4 GiB header, then a trickle of it.
      socket.once("data", () => {
        const prefix = Buffer.alloc(8);
        prefix.writeUInt32BE(0xffff_fff0, 0);
        prefix.writeUInt32BE(0, 4);
        socket.write(prefix);
        socket.write(Buffer.alloc(64 * 1024, 0x20));
      });
      socket.on("data", (d) => (received += d.length));
      socket.on("error", () => {});
    };
    const client = await peer.client();
    await assert.rejects(client.hello({ timeoutMs: 10_000 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, "AgentUnavailable");
      assert.match(err.message, /more than an agent sends/);
      assert.ok(!err.message.includes(peer.dir), "the socket's host path is not in the message");
      return true;
    });
    assert.ok(received > 0, "the request reached the peer");
    client.close();
  });

  it("says the connection closed without naming the socket's path", async () => {
    peer.onConnection = (socket) => socket.destroy();
    const client = await peer.client();
    await assert.rejects(client.hello({ timeoutMs: 10_000 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, "AgentUnavailable");
      assert.ok(!err.message.includes(peer.dir), err.message);
      return true;
    });
    client.close();
  });

  it("drops a peer whose frame header is JSON but not an object, without throwing", async () => {
    peer.onConnection = (socket) => {
      socket.once("data", () => socket.write(frame("null")));
      socket.on("error", () => {});
    };
    const client = await peer.client();
    await assert.rejects(client.hello({ timeoutMs: 10_000 }), /malformed frame/);
    client.close();
  });

  it("keeps only the documented shapes of an execution's value, images and error", async () => {
    peer.onConnection = (socket) => {
      socket.once("data", (d: Buffer) => {
        const id = (JSON.parse(d.subarray(8, 8 + d.readUInt32BE(0)).toString()) as { id: number }).id;
        socket.write(
          frame(
            JSON.stringify({
              id,
              ok: true,
              status: "Succeeded",
              stdout: "",
              stderr: "",
              result: { a: 1 },
              images: [{ base64: 5 }, { mime: "image/png", base64: "iVBOR" }, null],
              error: { name: 7, message: null },
            }),
          ),
        );
      });
      socket.on("error", () => {});
    };
    const client = await peer.client();
    const result = await client.exec({ code: "1", timeoutMs: 5_000, maxOutputChars: 100 });
    assert.equal(result.result, null);
    assert.deepEqual(result.images, [{ mime: "image/png", base64: "iVBOR" }]);
    assert.deepEqual(result.error, { name: "7", message: "null" });
    client.close();
  });
});

function frame(header: string): Buffer {
  const body = Buffer.from(header);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(body.length, 0);
  return Buffer.concat([prefix, body]);
}
