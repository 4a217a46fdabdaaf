// tools/call with `_meta.progressToken` (issue 15): the protocol turns a tool's output into notifications/progress
// when the transport can send ahead of the answer, and into nothing otherwise. The tools are a stand-in that prints.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { OutputChunk } from "../../src/agent-channel/agent-client.ts";
import { type JsonRpcNotification, McpProtocol } from "../../src/core/mcp/mcp-protocol.ts";
import type { CallOptions, McpCaller, McpTools, ToolResult } from "../../src/core/mcp/mcp-tools.ts";

/** Tools whose every call prints `chunks` through onOutput (when given one), then answers; records what it got. */
function printingTools(chunks: OutputChunk[]): { tools: McpTools; streamed: () => boolean } {
  let streamed = false;
  const tools = {
    call: async (_name: string, _args: unknown, _caller: McpCaller, options: CallOptions = {}) => {
      streamed = options.onOutput !== undefined;
      for (const chunk of chunks) options.onOutput?.(chunk);
      return { content: [{ type: "text", text: "done" }] } satisfies ToolResult;
    },
  } as unknown as McpTools;
  return { tools, streamed: () => streamed };
}

const caller = {} as McpCaller;
const request = (meta?: Record<string, unknown>) => ({
  jsonrpc: "2.0" as const,
  id: 7,
  method: "tools/call",
  params: {
    name: "runShellCommandInRemoteEnvironment",
    arguments: {},
    ...(meta === undefined ? {} : { _meta: meta }),
  },
});

describe("tools/call progress notifications", () => {
  it("each output chunk is a notification: the token, the characters so far, the new text; then the answer", async () => {
    const { tools } = printingTools([
      { stream: "stdout", text: "first\n" },
      { stream: "stderr", text: "warn\n" },
      { stream: "stdout", text: "second\n" },
    ]);
    const sent: JsonRpcNotification[] = [];
    const answer = await new McpProtocol(tools).answer(request({ progressToken: "t1" }), caller, {
      notify: (n) => sent.push(n),
    });
    assert.deepEqual(sent, [
      {
        jsonrpc: "2.0",
        method: "notifications/progress",
        params: { progressToken: "t1", progress: 6, message: "first\n" },
      },
      {
        jsonrpc: "2.0",
        method: "notifications/progress",
        params: { progressToken: "t1", progress: 11, message: "warn\n" },
      },
      {
        jsonrpc: "2.0",
        method: "notifications/progress",
        params: { progressToken: "t1", progress: 18, message: "second\n" },
      },
    ]);
    assert.deepEqual(answer, {
      jsonrpc: "2.0",
      id: 7,
      result: { content: [{ type: "text", text: "done" }] },
    });
  });

  it("a numeric token is kept as a number", async () => {
    const { tools } = printingTools([{ stream: "stdout", text: "x" }]);
    const sent: JsonRpcNotification[] = [];
    await new McpProtocol(tools).answer(request({ progressToken: 3 }), caller, {
      notify: (n) => sent.push(n),
    });
    assert.equal(sent[0]?.params?.["progressToken"], 3);
  });

  it("no token, a token that is not a string or number, or no way to send: the tool does not stream", async () => {
    for (const [meta, notify] of [
      [undefined, true],
      [{}, true],
      [{ progressToken: { not: "a token" } }, true],
      [{ progressToken: null }, true],
      [{ progressToken: "t1" }, false],
    ] as const) {
      const { tools, streamed } = printingTools([{ stream: "stdout", text: "x" }]);
      const sent: JsonRpcNotification[] = [];
      const answer = await new McpProtocol(tools).answer(
        request(meta === undefined ? undefined : { ...meta }),
        caller,
        notify ? { notify: (n) => sent.push(n) } : {},
      );
      assert.equal(streamed(), false, JSON.stringify(meta));
      assert.deepEqual(sent, []);
      assert.ok("result" in answer);
    }
  });
});
