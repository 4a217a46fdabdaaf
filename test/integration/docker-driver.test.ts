// DockerDriver against the real engine: hardening seen from inside the sandbox, labels, events, pulls, cleanup
// and network isolation. Traffic only ever goes to loopback, this host's bridge gateways, or our own sandboxes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import Docker from "dockerode";
import { DockerDriver } from "../../src/runtime/drivers/docker/docker-driver.ts";
import {
  ImageNotFoundError,
  ImagePullAuthError,
  RuntimeUnavailableError,
  SandboxCreateError,
} from "../../src/runtime/errors.ts";
import { buildLabels, LABEL_MANAGED, LABEL_POOL } from "../../src/runtime/labels.ts";
import type { SandboxEvent, SandboxSpec } from "../../src/runtime/sandbox-driver.ts";
import {
  dockerExec,
  dockerHostFromEnv,
  dockerOptionsFromEnv,
  ensureBusyboxImage,
} from "../helpers/busybox-image.ts";

const RUN_LABEL = "sessionpool-test.run";
const MiB = 1024 * 1024;

const docker = new Docker(dockerOptionsFromEnv());
const driver = new DockerDriver({ dockerHost: dockerHostFromEnv() });
let image = "";

before(async () => {
  image = await ensureBusyboxImage(docker);
});

after(async () => {
  await driver.close();
});

/** A per-test label value; everything the test creates carries it and is removed by `cleanup`. */
function newRun(t: { diagnostic(message: string): void }): string {
  const run = `t-${randomBytes(6).toString("hex")}`;
  t.diagnostic(`everything this test creates carries ${RUN_LABEL}=${run}`);
  return run;
}

async function cleanup(run: string): Promise<void> {
  for (const sandbox of await driver.list({ [RUN_LABEL]: run })) await driver.remove(sandbox.id);
}

function spec(run: string, overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return {
    image,
    labels: { ...buildLabels({ pool: "test-pool", instance: "test" }), [RUN_LABEL]: run },
    env: {},
    args: ["sleep", "300"],
    cpu: 0.5,
    memoryBytes: 64 * MiB,
    pidsLimit: 64,
    network: "none",
    user: "1000:1000",
    readOnlyRootfs: true,
    tmpfs: { "/tmp": MiB, "/mnt/data": 2 * MiB },
    init: true,
    ...overrides,
  };
}

interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** `docker exec` through dockerode (tests only: the server never execs per request). */
function exec(id: string, cmd: string[]): Promise<ExecResult> {
  return dockerExec(docker, id, cmd);
}

async function sh(id: string, script: string): Promise<ExecResult> {
  return exec(id, ["sh", "-c", script]);
}

function nextEvent(
  events: SandboxEvent[],
  predicate: (event: SandboxEvent) => boolean,
): Promise<SandboxEvent> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 15_000;
    const poll = () => {
      const found = events.find(predicate);
      if (found) return resolve(found);
      if (Date.now() > deadline) return reject(new Error(`no matching event; saw ${JSON.stringify(events)}`));
      setTimeout(poll, 20);
    };
    poll();
  });
}

describe("DockerDriver", () => {
  test("ping, getImage and an unreachable engine", async () => {
    await driver.ping();
    const info = await driver.getImage(image);
    assert.ok(info);
    assert.match(info.id, /^sha256:/);
    assert.equal(info.ref, image);
    assert.equal(await driver.getImage("sessionpool-test/absent:0"), undefined);

    const nowhere = new DockerDriver({ dockerHost: `unix://${join(tmpdir(), "sessionpool-no-such.sock")}` });
    await assert.rejects(nowhere.ping(), RuntimeUnavailableError);
    await assert.rejects(nowhere.list({}), RuntimeUnavailableError);
    await nowhere.close();
    await nowhere.close();
    await assert.rejects(nowhere.ping(), RuntimeUnavailableError);
  });

  test("create applies every hardening option, seen from inside the sandbox", async (t) => {
    const run = newRun(t);
    const socketDir = await mkdtemp(join(tmpdir(), "sessionpool-agent-"));
    await chmod(socketDir, 0o777);
    try {
      const info = await driver.create(
        spec(run, { env: { GREETING: "hello there" }, agentSocketDir: socketDir, targetPort: 8080 }),
      );
      assert.equal(info.state, "running");
      assert.equal(info.address, undefined, "network none has no address");
      assert.equal(info.image, image);
      assert.ok(info.startedAt instanceof Date);

      assert.equal((await exec(info.id, ["id", "-u"])).stdout, "1000");
      assert.equal((await exec(info.id, ["id", "-g"])).stdout, "1000");
      assert.equal((await sh(info.id, "echo $GREETING")).stdout, "hello there");

      // Read-only root, writable and bounded tmpfs mounts owned by the run user, where scripts may run.
      assert.notEqual((await sh(info.id, "echo x > /etc/x")).exitCode, 0, "/etc must be read-only");
      assert.notEqual((await sh(info.id, "touch /x")).exitCode, 0, "/ must be read-only");
      assert.equal((await sh(info.id, "echo ok > /tmp/a && cat /tmp/a")).stdout, "ok");
      assert.equal((await sh(info.id, "echo ok > /mnt/data/a && cat /mnt/data/a")).stdout, "ok");
      assert.equal(
        (await exec(info.id, ["stat", "-c", "%u:%g", "/tmp", "/mnt/data"])).stdout,
        "1000:1000\n1000:1000",
      );
      const script =
        "printf '#!/bin/sh\\necho ran\\n' > /mnt/data/s.sh && chmod +x /mnt/data/s.sh && /mnt/data/s.sh";
      assert.equal((await sh(info.id, script)).stdout, "ran", "tmpfs mounts allow running scripts");
      assert.notEqual(
        (await sh(info.id, "dd if=/dev/zero of=/tmp/big bs=64k count=32")).exitCode,
        0,
        "/tmp is 1 MiB",
      );
      assert.notEqual(
        (await sh(info.id, "dd if=/dev/zero of=/mnt/data/big bs=64k count=48")).exitCode,
        0,
        "/mnt/data is 2 MiB",
      );

      // No capabilities at all, no way to gain privileges.
      const status = (await exec(info.id, ["cat", "/proc/self/status"])).stdout;
      assert.match(status, /^CapEff:\s+0000000000000000$/m);
      assert.match(status, /^CapPrm:\s+0000000000000000$/m);
      assert.match(status, /^CapBnd:\s+0000000000000000$/m);
      assert.match(status, /^NoNewPrivs:\s+1$/m);

      // Network "none": only the loopback interface.
      assert.equal((await exec(info.id, ["ls", "/sys/class/net"])).stdout, "lo");

      // PID 1 is the engine's init, not our sleep.
      assert.match((await exec(info.id, ["cat", "/proc/1/cmdline"])).stdout, /init/);

      // Memory and pids limits, from the sandbox's own cgroup (v1 or v2 layout).
      const limits = await sh(
        info.id,
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null ||" +
          " cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max",
      );
      assert.deepEqual(limits.stdout.split("\n"), ["64", String(64 * MiB)]);

      // The agent socket directory is the host's, read-only: the sandbox sees what the host puts there and can
      // write nothing to the host's disk through it.
      await writeFile(join(socketDir, "probe"), "from-the-host");
      assert.equal((await sh(info.id, "cat /run/sessionpool/probe")).stdout, "from-the-host");
      const write = await sh(info.id, "echo from-inside > /run/sessionpool/written");
      assert.notEqual(write.exitCode, 0);
      assert.match(write.stderr, /Read-only file system/);

      const inspect = await docker.getContainer(info.id).inspect();
      const host = inspect.HostConfig as Docker.HostConfig & { CgroupnsMode?: string };
      assert.equal(host.NanoCpus, 500_000_000);
      assert.equal(host.Memory, 64 * MiB);
      assert.equal(host.MemorySwap, 64 * MiB);
      assert.equal(host.PidsLimit, 64);
      assert.equal(host.ReadonlyRootfs, true);
      assert.deepEqual(host.CapDrop, ["ALL"]);
      assert.deepEqual(host.SecurityOpt, ["no-new-privileges"]);
      assert.equal(host.Privileged, false);
      assert.equal(host.IpcMode, "private");
      assert.equal(host.NetworkMode, "none");
      assert.equal(host.Init, true);
      assert.equal(host.AutoRemove, false);
      assert.equal(host.CgroupnsMode, "private");
      assert.deepEqual(host.Binds, [`${socketDir}:/run/sessionpool:ro`]);
      assert.deepEqual(
        host.Ulimits?.find((u) => u.Name === "nofile"),
        { Name: "nofile", Soft: 1024, Hard: 4096 },
      );
      assert.equal(host.LogConfig?.Config["max-size"], "1m");
      assert.deepEqual(host.Tmpfs, {
        "/tmp": "rw,exec,nosuid,nodev,size=1048576,mode=1777,uid=1000,gid=1000",
        "/mnt/data": "rw,exec,nosuid,nodev,size=2097152,mode=1777,uid=1000,gid=1000",
      });
      assert.equal(inspect.Config.User, "1000:1000");
      assert.deepEqual(inspect.Config.Cmd, ["sleep", "300"]);

      const memory = await driver.memoryUsageBytes(info.id);
      assert.ok(memory !== undefined && memory > 0 && memory < 64 * MiB, `memory usage ${memory}`);
      const usage = await driver.usage(info.id, { timeoutMs: 5_000 });
      assert.ok(
        usage !== undefined && usage.memoryBytes !== null && usage.memoryBytes > 0,
        JSON.stringify(usage),
      );
      assert.ok(usage.cpuSeconds !== null && usage.cpuSeconds >= 0, JSON.stringify(usage));
    } finally {
      await cleanup(run);
      await rm(socketDir, { recursive: true, force: true });
    }
  });

  test("command replaces the entrypoint and drops the image's cmd", async (t) => {
    const run = newRun(t);
    try {
      const info = await driver.create(spec(run, { command: ["sleep"], args: undefined, init: false }));
      // `sleep` with no argument exits at once with a usage error: the image's CMD was not appended.
      const inspect = await docker.getContainer(info.id).inspect();
      assert.deepEqual(inspect.Config.Entrypoint, ["sleep"]);
      assert.equal(inspect.Config.Cmd, null);
    } finally {
      await cleanup(run);
    }
  });

  test("labels round-trip through list(), remove is idempotent, inspect of a removed id is undefined", async (t) => {
    const run = newRun(t);
    try {
      const a = await driver.create(spec(run, { labels: { ...spec(run).labels, [LABEL_POOL]: "pool-a" } }));
      const b = await driver.create(spec(run, { labels: { ...spec(run).labels, [LABEL_POOL]: "pool-b" } }));

      const all = await driver.list({ [RUN_LABEL]: run });
      assert.deepEqual(all.map((s) => s.id).sort(), [a.id, b.id].sort());
      const onlyA = await driver.list({ [RUN_LABEL]: run, [LABEL_POOL]: "pool-a" });
      assert.equal(onlyA.length, 1);
      assert.equal(onlyA[0]?.id, a.id);
      assert.deepEqual(onlyA[0]?.labels, {
        [LABEL_MANAGED]: "true",
        [LABEL_POOL]: "pool-a",
        "io.sessionpool.instance": "test",
        [RUN_LABEL]: run,
      });
      assert.equal(onlyA[0]?.state, "running");

      const inspected = await driver.inspect(a.id);
      assert.deepEqual(inspected?.labels, onlyA[0]?.labels);

      await driver.remove(a.id);
      await driver.remove(a.id);
      await Promise.all([driver.remove(b.id), driver.remove(b.id)]);
      await driver.remove("sessionpool-never-existed");
      assert.equal(await driver.inspect(a.id), undefined);
      assert.equal(await driver.memoryUsageBytes(a.id), undefined);
      assert.equal(await driver.usage(a.id), undefined);
      assert.deepEqual(await driver.list({ [RUN_LABEL]: run }), []);
    } finally {
      await cleanup(run);
    }
  });

  test("watch reports die with the exit code, then destroy; unsubscribing stops delivery", async (t) => {
    const run = newRun(t);
    const events: SandboxEvent[] = [];
    const unsubscribe = driver.watch({ [RUN_LABEL]: run }, (event) => events.push(event));
    try {
      const info = await driver.create(spec(run, { args: ["sh", "-c", "sleep 0.2; exit 3"] }));
      const died = await nextEvent(events, (e) => e.id === info.id && e.type === "die");
      assert.equal(died.exitCode, 3);
      assert.equal(died.labels[RUN_LABEL], run);
      assert.equal(died.labels[LABEL_POOL], "test-pool");
      const exited = await driver.inspect(info.id);
      assert.equal(exited?.state, "exited");
      assert.equal(exited?.exitCode, 3);
      const listed = await driver.list({ [RUN_LABEL]: run });
      assert.equal(listed[0]?.exitCode, 3);

      await driver.remove(info.id);
      await nextEvent(events, (e) => e.id === info.id && e.type === "destroy");

      // A second watcher tells us when the engine has reported the next sandbox's events (a watcher sees
      // everything from the moment watch() returns, even before its stream is open).
      unsubscribe();
      const seen = events.length;
      const witness: SandboxEvent[] = [];
      const stopWitness = driver.watch({ [RUN_LABEL]: run }, (event) => witness.push(event));
      try {
        const second = await driver.create(spec(run, { args: ["true"] }));
        await driver.remove(second.id);
        await nextEvent(witness, (e) => e.id === second.id && e.type === "destroy");
        assert.equal(events.length, seen, "no events after unsubscribe");
      } finally {
        stopWitness();
      }
    } finally {
      unsubscribe();
      await cleanup(run);
    }
  });

  test("a failed create leaves nothing behind", async (t) => {
    const run = newRun(t);
    try {
      // Without init the engine itself fails to start the missing binary (with init, init starts and exits 127).
      await assert.rejects(
        driver.create(spec(run, { command: ["/no/such/binary"], init: false })),
        SandboxCreateError,
      );
      await assert.rejects(
        driver.create(spec(run, { image: "sessionpool-test/absent:0" })),
        ImageNotFoundError,
      );
      await assert.rejects(
        driver.create(spec(run, { runtime: "sessionpool-no-such-runtime" })),
        SandboxCreateError,
      );
      assert.deepEqual(await driver.list({ [RUN_LABEL]: run }), []);
    } finally {
      await cleanup(run);
    }
  });

  test("create honours the caller's signal and cleans up what it started", async (t) => {
    const run = newRun(t);
    try {
      const aborted = AbortSignal.abort(new Error("caller gave up"));
      await assert.rejects(driver.create(spec(run), { signal: aborted }), /caller gave up/);
      const controller = new AbortController();
      const creating = driver.create(spec(run), { signal: controller.signal });
      setTimeout(() => controller.abort(new Error("cancelled mid-create")), 30);
      await assert.rejects(creating, /cancelled mid-create/);
      assert.deepEqual(await driver.list({ [RUN_LABEL]: run }), []);
    } finally {
      await cleanup(run);
    }
  });

  test("a driver without a usable iptables refuses networked sandboxes", async (t) => {
    const run = newRun(t);
    const unprotected = new DockerDriver({
      dockerHost: dockerHostFromEnv(),
      iptablesPath: "/nonexistent/iptables",
      internalNetworkName: "sessionpool-test-unprotected",
      internalBridgeName: "sp-test-nofw",
    });
    try {
      await assert.rejects(unprotected.create(spec(run, { network: "internal" })), (err: unknown) => {
        assert.ok(err instanceof SandboxCreateError);
        assert.match(err.message, /iptables/);
        return true;
      });
      assert.deepEqual(await driver.list({ [RUN_LABEL]: run }), []);
      await assert.rejects(docker.getNetwork("sessionpool-test-unprotected").inspect(), { statusCode: 404 });
    } finally {
      await unprotected.close();
      await cleanup(run);
    }
  });

  describe("pullImage from a registry on loopback", () => {
    let registry: FakeRegistry;
    before(async () => {
      registry = await startFakeRegistry();
    });
    after(async () => {
      await registry.close();
    });

    test("pulls with the right credentials and reports the image", async () => {
      const ref = `${registry.host}/${registry.repository}:1`;
      try {
        const info = await driver.pullImage(ref, {
          server: registry.host,
          username: "user",
          password: "secret",
        });
        assert.equal(info.ref, ref);
        assert.equal(info.id, registry.configDigest);
        assert.equal(info.user, "1000:1000");
        assert.equal(info.labels["sessionpool-test.pulled"], registry.repository);
        assert.deepEqual(await driver.getImage(ref), info);
      } finally {
        await docker
          .getImage(ref)
          .remove({ force: true })
          .catch(() => {});
      }
    });

    test("maps refused credentials, unknown images and aborts", async () => {
      const ref = `${registry.host}/${registry.repository}:1`;
      await assert.rejects(
        driver.pullImage(ref, { server: registry.host, username: "user", password: "wrong" }),
        ImagePullAuthError,
      );
      await assert.rejects(driver.pullImage(ref), ImagePullAuthError);
      await assert.rejects(
        driver.pullImage(`${registry.host}/${registry.repository}:2`, {
          server: registry.host,
          username: "user",
          password: "secret",
        }),
        ImageNotFoundError,
      );
      const started = Date.now();
      await assert.rejects(
        driver.pullImage(
          `${registry.host}/slow:1`,
          { server: registry.host, username: "user", password: "secret" },
          { signal: AbortSignal.timeout(300) },
        ),
        { name: "TimeoutError" },
      );
      assert.ok(Date.now() - started < 5_000, "the abort ended the pull promptly");
    });
  });

  for (const network of ["internal", "egress"] as const) {
    test(`network "${network}": sandboxes reach neither each other nor the host, the host reaches them`, async (t) => {
      const run = newRun(t);
      const listeners: Array<{ server: Server; sockets: Socket[] }> = [];
      try {
        const serve =
          "mkdir -p /tmp/www && echo hello-from-a > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
        const a = await driver.create(spec(run, { network, args: ["sh", "-c", serve], targetPort: 8080 }));
        const b = await driver.create(spec(run, { network }));
        assert.ok(a.address && b.address, "networked sandboxes have an address");

        // The host reaches the sandbox's port (replies pass the INPUT rule as ESTABLISHED).
        assert.equal(await fetchWithRetry(`http://${a.address}:8080/`), "hello-from-a");
        // wget works inside the sandbox (control for the negative checks below).
        const local = await sh(a.id, "timeout 2 wget -q -O - http://127.0.0.1:8080/");
        assert.equal(local.stdout, "hello-from-a", JSON.stringify(local));

        const gateway = await gatewayOf(
          network === "internal" ? "sessionpool-internal" : "sessionpool-egress",
        );
        const onGateway = await listen(gateway);
        const onAnyAddress = await listen("0.0.0.0");
        listeners.push(onGateway, onAnyAddress);
        // Controls: the listeners do accept connections from the host itself.
        await connectOnce(gateway, port(onGateway.server));
        await connectOnce(gateway, port(onAnyAddress.server));
        await new Promise((resolve) => setTimeout(resolve, 50));
        onGateway.sockets.length = 0;
        onAnyAddress.sockets.length = 0;

        const attempts = await Promise.all([
          sh(b.id, `timeout 1 wget -q -O - http://${a.address}:8080/`),
          sh(b.id, `nc -w 1 ${gateway} ${port(onGateway.server)} </dev/null`),
          sh(b.id, `nc -w 1 ${gateway} ${port(onAnyAddress.server)} </dev/null`),
          sh(b.id, `timeout 1 wget -q -O - http://${gateway}:${port(onAnyAddress.server)}/`),
        ]);
        for (const [index, attempt] of attempts.entries()) assertBlocked(attempt, `attempt ${index}`);
        assert.equal(onGateway.sockets.length, 0, "nothing arrived at the listener on the gateway address");
        assert.equal(onAnyAddress.sockets.length, 0, "nothing arrived at the listener on 0.0.0.0");

        // No IPv6 inside: nothing to get around the IPv4 rules with.
        assert.equal((await exec(b.id, ["cat", "/proc/net/if_inet6"])).stdout, "");

        const routes = (await exec(b.id, ["cat", "/proc/net/route"])).stdout;
        if (network === "internal") {
          // Docker 20.10 still installs a default route on internal networks; it leads only to the gateway,
          // which is closed (above), and the engine drops anything forwarded off the subnet (below).
          const defaults = routes.split("\n").filter((line) => line.split(/\s+/)[1] === "00000000");
          for (const line of defaults) assert.equal(hexToIp(line.split(/\s+/)[2] ?? ""), gateway);
        }
        assert.match(routes, /eth0/);

        const net = await docker.getNetwork(`sessionpool-${network}`).inspect();
        assert.equal(net.Internal, network === "internal");
        assert.equal(net.Options?.["com.docker.network.bridge.enable_icc"], "false");
        await assertFirewallRules(network);
      } finally {
        for (const { server, sockets } of listeners) {
          for (const socket of sockets) socket.destroy();
          server.close();
        }
        await cleanup(run);
      }
    });
  }

  test("sandboxes on different networks cannot reach each other", async (t) => {
    const run = newRun(t);
    try {
      const serve = "mkdir -p /tmp/www && echo hi > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
      const internal = await driver.create(spec(run, { network: "internal", args: ["sh", "-c", serve] }));
      const egress = await driver.create(spec(run, { network: "egress", args: ["sh", "-c", serve] }));
      assert.equal(await fetchWithRetry(`http://${internal.address}:8080/`), "hi");
      assert.equal(await fetchWithRetry(`http://${egress.address}:8080/`), "hi");
      const [fromInternal, fromEgress] = await Promise.all([
        sh(internal.id, `timeout 1 wget -q -O - http://${egress.address}:8080/`),
        sh(egress.id, `timeout 1 wget -q -O - http://${internal.address}:8080/`),
      ]);
      assertBlocked(fromInternal, "internal has no way off its subnet");
      assertBlocked(fromEgress, "egress may not reach private ranges");
    } finally {
      await cleanup(run);
    }
  });
});

/** A connection attempt that failed for the right reason: a timeout (143, killed by `timeout`) or an error (1). */
function assertBlocked(result: ExecResult, what: string): void {
  // Busybox's own `wget -T` segfaults (139); a crash must never pass for isolation.
  assert.ok(result.exitCode === 1 || result.exitCode === 143, `${what} must fail: ${JSON.stringify(result)}`);
}

async function fetchWithRetry(url: string): Promise<string> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      return (await response.text()).trim();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function gatewayOf(networkName: string): Promise<string> {
  const info = (await docker.getNetwork(networkName).inspect()) as Docker.NetworkInspectInfo;
  const gateway = info.IPAM?.Config?.[0]?.Gateway;
  assert.ok(gateway, `network ${networkName} has a gateway`);
  return gateway;
}

async function listen(address: string): Promise<{ server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
  });
  server.listen(0, address);
  await once(server, "listening");
  return { server, sockets };
}

function port(server: Server): number {
  const address = server.address();
  assert.ok(address && typeof address === "object");
  return address.port;
}

async function connectOnce(host: string, portNumber: number): Promise<void> {
  const socket = connect(portNumber, host);
  await once(socket, "connect");
  socket.destroy();
}

/** /proc/net/route prints addresses as little-endian hex. */
function hexToIp(hex: string): string {
  const bytes = hex.match(/../g) ?? [];
  return bytes
    .reverse()
    .map((byte) => String(Number.parseInt(byte, 16)))
    .join(".");
}

async function assertFirewallRules(network: "internal" | "egress"): Promise<void> {
  const bridge = network === "internal" ? "sp-internal0" : "sp-egress0";
  const run = promisify(execFile);
  const input = (await run("iptables", ["-w", "5", "-S", "INPUT"])).stdout;
  assert.ok(
    input.includes(
      `-A INPUT -i ${bridge} -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment sessionpool -j DROP`,
    ),
    input,
  );
  const user = (await run("iptables", ["-w", "5", "-S", "DOCKER-USER"])).stdout;
  assert.ok(
    user.includes(`-A DOCKER-USER -i ${bridge} -o ${bridge} -m comment --comment sessionpool -j DROP`),
    user,
  );
  if (network === "egress") {
    for (const range of [
      "10.0.0.0/8",
      "172.16.0.0/12",
      "192.168.0.0/16",
      "169.254.0.0/16",
      "100.64.0.0/10",
    ]) {
      assert.ok(
        user.includes(`-d ${range} -i ${bridge} -m conntrack ! --ctstate RELATED,ESTABLISHED`),
        range,
      );
    }
  }
}

interface FakeRegistry {
  host: string;
  repository: string;
  configDigest: string;
  close(): Promise<void>;
}

/**
 * A minimal Docker registry (v2 API, basic auth) on 127.0.0.1 serving one single-layer image, plus a "slow"
 * repository that never answers. The engine treats 127.0.0.0/8 registries as insecure, so plain HTTP works.
 */
async function startFakeRegistry(): Promise<FakeRegistry> {
  const repository = `sessionpool-test/pulled-${randomBytes(4).toString("hex")}`;
  const dir = await mkdtemp(join(tmpdir(), "sessionpool-layer-"));
  await writeFile(join(dir, "hello.txt"), "hello\n");
  const layerTar = (await promisify(execFile)(
    "tar",
    ["-C", dir, "--owner=0", "--group=0", "-c", "hello.txt"],
    {
      encoding: "buffer",
    },
  )) as unknown as { stdout: Buffer };
  await rm(dir, { recursive: true, force: true });
  const sha256 = (data: Buffer | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;
  const layer = gzipSync(layerTar.stdout);
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { User: "1000:1000", Labels: { "sessionpool-test.pulled": repository }, Cmd: ["/hello.txt"] },
      rootfs: { type: "layers", diff_ids: [sha256(layerTar.stdout)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: {
        mediaType: "application/vnd.docker.container.image.v1+json",
        size: config.length,
        digest: sha256(config),
      },
      layers: [
        {
          mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
          size: layer.length,
          digest: sha256(layer),
        },
      ],
    }),
  );
  const blobs = new Map([
    [sha256(config), config],
    [sha256(layer), layer],
  ]);
  const authorization = `Basic ${Buffer.from("user:secret").toString("base64")}`;

  const server: HttpServer = createHttpServer((req, res) => {
    const url = req.url ?? "";
    res.setHeader("Docker-Distribution-API-Version", "registry/2.0");
    const send = (status: number, body: Buffer | string, type = "application/json", extra = {}) => {
      const data = typeof body === "string" ? Buffer.from(body) : body;
      res.writeHead(status, { "Content-Type": type, "Content-Length": data.length, ...extra });
      res.end(req.method === "HEAD" ? undefined : data);
    };
    if (req.headers.authorization !== authorization) {
      return send(
        401,
        JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }),
        undefined,
        {
          "WWW-Authenticate": 'Basic realm="sessionpool-test"',
        },
      );
    }
    if (url === "/v2/") return send(200, "{}");
    if (url.startsWith("/v2/slow/")) return; // never answers
    const manifestMatch = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(url);
    if (
      manifestMatch &&
      manifestMatch[1] === repository &&
      (manifestMatch[2] === "1" || manifestMatch[2] === sha256(manifest))
    ) {
      return send(200, manifest, "application/vnd.docker.distribution.manifest.v2+json", {
        "Docker-Content-Digest": sha256(manifest),
      });
    }
    const blobMatch = /^\/v2\/(.+)\/blobs\/(.+)$/.exec(url);
    const blob = blobMatch && blobMatch[1] === repository ? blobs.get(blobMatch[2] ?? "") : undefined;
    if (blob) return send(200, blob, "application/octet-stream", { "Docker-Content-Digest": blobMatch?.[2] });
    const code = manifestMatch ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN";
    return send(
      404,
      JSON.stringify({ errors: [{ code, message: `${code.toLowerCase().replace("_", " ")}` }] }),
    );
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  assert.ok(address && typeof address === "object");
  return {
    host: `127.0.0.1:${address.port}`,
    repository,
    configDigest: sha256(config),
    close: async () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
