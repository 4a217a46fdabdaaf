// Waiting for long-running operations, with a scripted server: Retry-After, terminal states, the deadline.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EXIT, OperationFailedError, OperationTimeoutError } from "../../src/cli/errors.ts";
import type { HttpClient, HttpResponse } from "../../src/cli/http-client.ts";
import { Progress, retryAfterMs, waitForOperation } from "../../src/cli/lro.ts";

function response(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { status, headers, body: Buffer.from(body === undefined ? "" : JSON.stringify(body)), url: "" };
}

/** A client whose GETs answer from a script, recording the URLs asked for. */
function scripted(answers: HttpResponse[], last: HttpResponse): { client: HttpClient; urls: string[] } {
  const urls: string[] = [];
  const client = {
    request: async (_method: string, url: string) => {
      urls.push(url);
      return answers.shift() ?? last;
    },
  } as unknown as HttpClient;
  return { client, urls };
}

const started = response(201, {}, { "azure-asyncoperation": "http://s/op", location: "http://s/result" });
const fast = { "retry-after-ms": "5" };

describe("waitForOperation", () => {
  it("polls Azure-AsyncOperation until Succeeded, honouring Retry-After", async () => {
    const { client, urls } = scripted(
      [response(200, { status: "InProgress" }, fast), response(200, { status: "InProgress" }, fast)],
      response(200, { status: "Succeeded" }),
    );
    assert.equal(await waitForOperation(client, started, { label: "x", timeoutMs: 5000 }), undefined);
    assert.deepEqual(urls, ["http://s/op", "http://s/op", "http://s/op"]);
  });

  it("a Failed operation becomes its error, exit status 1", async () => {
    const { client } = scripted(
      [],
      response(200, { status: "Failed", error: { code: "ImageNotFound", message: "no such image" } }),
    );
    await assert.rejects(
      waitForOperation(client, started, { label: "x", timeoutMs: 5000 }),
      (err: unknown) => {
        assert.ok(err instanceof OperationFailedError);
        assert.equal(err.display(), "(ImageNotFound) no such image");
        assert.equal(err.exitCode, EXIT.serverError);
        return true;
      },
    );
  });

  it("follows Location while it answers 202 and returns the final answer", async () => {
    const onlyLocation = response(202, undefined, { location: "http://s/result" });
    const { client, urls } = scripted([response(202, undefined, fast)], response(200, { name: "p" }));
    const final = await waitForOperation(client, onlyLocation, { label: "x", timeoutMs: 5000 });
    assert.equal(final?.status, 200);
    assert.deepEqual(urls, ["http://s/result", "http://s/result"]);
  });

  it("gives up at the deadline with exit status 5; the progress line is cleared", async () => {
    const { client } = scripted([], response(200, { status: "InProgress" }, fast));
    let screen = "";
    const progress = new Progress(true, (t) => {
      screen += t;
    });
    await assert.rejects(
      waitForOperation(client, started, { label: "Provisioning p", timeoutMs: 60, progress }),
      (err: unknown) => err instanceof OperationTimeoutError && err.exitCode === EXIT.timeout,
    );
    assert.ok(screen.includes("\r\x1b[2KProvisioning p: InProgress, 0 s"), JSON.stringify(screen));
    assert.ok(screen.endsWith("\r\x1b[2K"));
  });

  it("reads Retry-After in seconds, as a date, and the -ms headers", () => {
    assert.equal(retryAfterMs(response(200, {}, { "retry-after": "3" })), 3000);
    assert.equal(retryAfterMs(response(200, {}, { "x-ms-retry-after-ms": "250" })), 250);
    const soon = retryAfterMs(
      response(200, {}, { "retry-after": new Date(Date.now() + 5000).toUTCString() }),
    );
    assert.ok(soon !== undefined && soon > 3000 && soon <= 5000);
    assert.equal(retryAfterMs(response(200, {}, {})), undefined);
  });
});
