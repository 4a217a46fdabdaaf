// How --sandbox-runtime is settled against the runtimes an engine has registered (pure; the engine's answer is
// the input), and when a pool cannot run under the result.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { PoolDoc } from "../../src/core/pools/pool-doc.ts";
import {
  DEFAULT_SANDBOX,
  runtimeUnavailable,
  templateFor,
} from "../../src/core/sessions/sandbox-template.ts";
import { chooseSandboxRuntimes, type EngineRuntime } from "../../src/runtime/sandbox-runtime.ts";

const RUNC: EngineRuntime = { name: "runc", args: [] };
const GVISOR: EngineRuntime = { name: "runsc", args: ["--network=none", "--host-uds=open", "--oci-seccomp"] };
const GVISOR_NET: EngineRuntime = {
  name: "runsc-net",
  args: ["--network=host", "--host-uds=open", "--oci-seccomp"],
};

function pool(containerType: string, egress = false): PoolDoc {
  return {
    properties: {
      containerType,
      sessionNetworkConfiguration: { status: egress ? "EgressEnabled" : "EgressDisabled" },
    },
  } as unknown as PoolDoc;
}

describe("chooseSandboxRuntimes", () => {
  it("auto takes gVisor, with its networked twin, when the engine has both", () => {
    const r = chooseSandboxRuntimes("auto", [RUNC, GVISOR, GVISOR_NET]);
    assert.deepEqual(
      { name: r.name, isolated: r.isolated, networked: r.networked, warning: r.warning },
      { name: "runsc", isolated: "runsc", networked: "runsc-net", warning: undefined },
    );
    assert.equal(r.networkedUnavailable, undefined);
    assert.ok(r.pidsOverhead > 0, "gVisor's own threads get pids of their own");
    assert.equal(r.forkInterpreter, false, "a forked interpreter holds more memory under gVisor, not less");
    const profile = JSON.parse(r.seccompProfile ?? "{}") as { syscalls: { names: string[] }[] };
    assert.ok(
      profile.syscalls.some((s) => s.names.includes("unshare")),
      "the session's own syscalls are filtered",
    );
  });

  it("auto settles for runc with one warning when gVisor is missing or cannot reach the agent", () => {
    for (const available of [[RUNC], [RUNC, { name: "runsc", args: ["--network=none"] }]]) {
      const r = chooseSandboxRuntimes("auto", available);
      assert.equal(r.name, "runc");
      assert.equal(r.isolated, undefined);
      assert.match(r.warning ?? "", /share the host's kernel: .*scripts\/setup\.sh/);
    }
    assert.match(
      chooseSandboxRuntimes("auto", [RUNC, { name: "runsc", args: ["--network=none"] }]).warning ?? "",
      /lacks --host-uds=open/,
    );
  });

  it("runsc asked for by name and missing, or registered without what it needs, stops the start", () => {
    assert.throws(() => chooseSandboxRuntimes("runsc", [RUNC]), {
      code: "RuntimeNotConfigured",
      message: /--sandbox-runtime runsc: the engine has no runtime named 'runsc'; scripts\/setup\.sh/,
    });
    assert.throws(
      () => chooseSandboxRuntimes("runsc", [{ name: "runsc", args: ["--host-uds=open", "--oci-seccomp"] }]),
      /needs --network=none \(it has no --network\)/,
    );
    assert.throws(
      () => chooseSandboxRuntimes("runsc", [{ name: "runsc", args: ["--host-uds=open", "--network=none"] }]),
      /lacks --oci-seccomp/,
    );
    assert.throws(() => chooseSandboxRuntimes("kata-runtime", [RUNC, GVISOR]), {
      message:
        /--sandbox-runtime kata-runtime: the engine has no runtime of that name \(it has runc, runsc\)/,
    });
  });

  it("accepts the older flag spellings runsc takes", () => {
    const r = chooseSandboxRuntimes("runsc", [
      { name: "runsc", args: ["-network", "none", "--fsgofer-host-uds", "-oci-seccomp"] },
      { name: "runsc-net", args: ["--network", "host", "--host-uds=all", "--oci-seccomp=true"] },
    ]);
    assert.equal(r.networked, "runsc-net");
  });

  it("without runsc-net, networked pools are refused naming the runtime; the others run", () => {
    const r = chooseSandboxRuntimes("auto", [RUNC, GVISOR]);
    assert.equal(r.name, "runsc");
    assert.equal(runtimeUnavailable(pool("PythonLTS"), r), undefined);
    assert.equal(runtimeUnavailable(pool("Shell"), r), undefined);
    assert.match(
      runtimeUnavailable(pool("PythonLTS", true), r) ?? "",
      /^EgressEnabled pools cannot run under the sandbox runtime 'runsc' on this server: .*'runsc-net'/,
    );
    assert.match(runtimeUnavailable(pool("CustomContainer"), r) ?? "", /^CustomContainer pools cannot run/);
  });

  it("runc and other runtimes carry every pool", () => {
    for (const r of [
      chooseSandboxRuntimes("runc", []),
      chooseSandboxRuntimes("kata", [{ name: "kata", args: [] }]),
    ]) {
      assert.equal(runtimeUnavailable(pool("CustomContainer"), r), undefined);
      assert.equal(r.pidsOverhead, 0);
      assert.equal(r.forkInterpreter, true);
    }
  });
});

describe("the sandbox template", () => {
  it("tells a PythonLTS agent whether to fork its interpreter, by runtime", () => {
    const python = {
      properties: { containerType: "PythonLTS", sessionNetworkConfiguration: { status: "EgressDisabled" } },
    } as unknown as PoolDoc;
    const fork = (r: ReturnType<typeof chooseSandboxRuntimes>) =>
      templateFor(python, DEFAULT_SANDBOX, r, "sha256:x").spec.env?.["SESSIONPOOL_FORK_KERNEL"];
    assert.equal(fork(chooseSandboxRuntimes("runc", [])), "1");
    assert.equal(fork(chooseSandboxRuntimes("auto", [RUNC, GVISOR, GVISOR_NET])), "0");
  });
});
