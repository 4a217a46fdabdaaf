// What a client sees of an agent's `ok: false` answer: the agent's code when it is a documented one, else
// AgentInternalError (500); the agent's own code is kept for logs and callers in the server.
import assert from "node:assert/strict";
import { it } from "node:test";
import { AgentRequestError } from "../../src/agent-channel/errors.ts";

it("passes documented agent codes through with their statuses", () => {
  for (const [code, status] of [
    ["FileNotFound", 404],
    ["PathOutsideDataDir", 400],
    ["AlreadyExists", 409],
    ["FileTooLarge", 413],
  ] as const) {
    const err = new AgentRequestError(code, "x");
    assert.equal(err.code, code);
    assert.equal(err.statusCode, status);
    assert.equal(err.message, "x");
  }
});

it("answers the agent's Internal, and any code it does not know, as AgentInternalError", () => {
  for (const code of ["Internal", "SomethingNew", "__proto__", "toString"]) {
    const err = new AgentRequestError(code, "could not read the installed packages");
    assert.equal(err.code, "AgentInternalError", code);
    assert.equal(err.statusCode, 500);
    assert.equal(err.agentCode, code);
    assert.match(err.message, new RegExp(`\\(${code.replace(/_/g, "_")}\\): could not read`));
  }
});
