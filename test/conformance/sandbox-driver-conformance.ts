// The contract every SandboxDriver must satisfy, written once and run against each driver: what core/ relies on
// (sandbox-factory, sandbox-adoption, engine-watch, session-usage, session-manager), stated through the driver
// interface, plus a small probe for what only the sandbox itself can show (its user, mounts, limits). The clauses
// are listed in CLAUSES and in docs/scale-out.md; a driver that cannot have one says why in `skip`.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  ImageNotFoundError,
  ImagePullAuthError,
  RuntimeUnavailableError,
  SandboxCreateError,
} from "../../src/runtime/errors.ts";
import { buildLabels, LABEL_INSTANCE, LABEL_MANAGED, LABEL_POOL } from "../../src/runtime/labels.ts";
import type {
  SandboxDriver,
  SandboxEvent,
  SandboxInfo,
  SandboxSpec,
} from "../../src/runtime/sandbox-driver.ts";
import {
  chooseSandboxRuntimes,
  type RuntimeChoice,
  type SandboxRuntimes,
} from "../../src/runtime/sandbox-runtime.ts";

/** Every clause, in the order the suite states them; `skip` keys. */
export const CLAUSES = {
  engine: "ping answers and runtimes() lists the engine's runtimes with their arguments",
  unreachable:
    "an engine that is not there is RuntimeUnavailableError (ping, list); close() is idempotent and a closed driver refuses calls the same way",
  images: "getImage reports a local image (id, ref, labels) and undefined for an absent one",
  pullErrors:
    "pullImage: an image no registry serves is ImageNotFoundError; refused credentials are ImagePullAuthError",
  create: "create returns a running sandbox carrying every label it was given; inspect agrees",
  list: "list(labels) returns exactly the sandboxes whose labels include all of them, in any state; inspect of an unknown id is undefined",
  remove:
    "remove is idempotent: twice, concurrently, or of an id that never existed is success; the sandbox is gone",
  exit: "a sandbox whose process exits is reported exited with its exit code by inspect and list",
  events:
    "watch(labels) delivers die (with the exit code) and destroy with the sandbox's labels, for sandboxes carrying the labels only, and nothing after unsubscribing",
  killed: "a sandbox killed from outside the driver is reported by a die event and as exited",
  abort: "a signal already aborted rejects every call with its reason and starts nothing",
  abortMidway:
    "a create aborted while under way rejects with the signal's reason (or resolves, had it finished) and leaves nothing behind",
  failedCreate:
    "a create that fails leaves nothing behind: an absent image is ImageNotFoundError, an unknown runtime SandboxCreateError",
  spec: "inside the sandbox: the spec's user, env, args and init; writable, size-bounded tmpfs mounts where scripts run; no interface but lo for network none",
  rootfs:
    "readOnlyRootfs true refuses writes to / (even to root, whom only the mount can refuse); false allows them",
  agentSocketDir:
    "agentSocketDir is the host's directory at /run/sessionpool: what the host writes is seen, nothing can be written",
  limits: "memory, pids and cpu limits are enforced where the sandbox's isolation lives",
  network:
    "network internal: the sandbox has an address, and its targetPort is reachable from this host at that address",
  usage:
    "usage() and memoryUsageBytes() report a running sandbox's numbers (or null), and undefined once it is gone",
} as const;

export type Clause = keyof typeof CLAUSES;

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** The limits the host enforces on a sandbox; undefined where none is set. */
export interface EnforcedLimits {
  memoryBytes: number | undefined;
  pids: number | undefined;
  /** Cores (0.5 = half a core). */
  cpu: number | undefined;
}

/** A test-only side door into a driver's sandboxes (the server never uses one). */
export interface SandboxProbe {
  /** Runs `argv` (no shell) inside the sandbox as the sandbox's user; stdout and stderr trimmed. */
  exec(id: string, argv: string[]): Promise<ExecResult>;
  /** Read where the isolation enforces them (for Docker: the sandbox's cgroup on the host), not from the spec. */
  limits(id: string): Promise<EnforcedLimits>;
  /** Kills the sandbox's main process from outside the driver, as the kernel's OOM killer or an operator would. */
  kill(id: string): Promise<void>;
}

export interface TestRegistryHandle {
  /** "host:port" as it appears in image references. */
  host: string;
  username: string;
  password: string;
  stop(): Promise<void>;
}

export interface ConformanceOptions {
  /** A local image with busybox's tools (sh, sleep, id, dd, httpd), present on the driver's engine. */
  image: () => Promise<string>;
  /** What `--sandbox-runtime` asks for (settled against runtimes() as the core does); default "auto". */
  runtime?: RuntimeChoice;
  /** Needed by the clauses that look inside a sandbox; without it they are skipped ("lacks: "). */
  probe?: SandboxProbe;
  /** A driver of the same kind whose engine is not there. */
  makeUnreachableDriver?: () => SandboxDriver;
  /** A registry the driver's engine can reach that requires credentials (the pull clauses). */
  registry?: () => Promise<TestRegistryHandle>;
  /** Clauses this driver cannot have, with why; under CI=true the reason must start with "lacks: ". */
  skip?: Partial<Record<Clause, string>>;
}

const RUN_LABEL = "sessionpool-test.run";
const MiB = 1024 * 1024;
const EVENT_DEADLINE_MS = 20_000;

/** Events as they arrive, and a way to wait for one (existing or future) with a failure deadline. */
class EventLog {
  readonly events: SandboxEvent[] = [];
  readonly #waiters = new Set<{ match: (e: SandboxEvent) => boolean; resolve: (e: SandboxEvent) => void }>();

  readonly push = (event: SandboxEvent): void => {
    this.events.push(event);
    for (const waiter of this.#waiters) {
      if (!waiter.match(event)) continue;
      this.#waiters.delete(waiter);
      waiter.resolve(event);
    }
  };

  next(match: (e: SandboxEvent) => boolean, what: string): Promise<SandboxEvent> {
    const found = this.events.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`no ${what} within ${EVENT_DEADLINE_MS} ms; saw ${JSON.stringify(this.events)}`));
      }, EVENT_DEADLINE_MS);
      const waiter = {
        match,
        resolve: (e: SandboxEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      this.#waiters.add(waiter);
    });
  }
}

function includesLabels(actual: Record<string, string>, expected: Record<string, string>): void {
  for (const [key, value] of Object.entries(expected)) {
    assert.equal(actual[key], value, `label ${key}: ${JSON.stringify(actual)}`);
  }
}

/**
 * Declares the conformance suite for the driver `makeDriver` makes (one driver for the suite, more for the
 * unreachable/closed clauses when `makeUnreachableDriver` is given). Everything the suite creates carries
 * `sessionpool-test.run=<run>` and is removed by that label at the end, whatever failed.
 */
export function describeSandboxDriverConformance(
  name: string,
  makeDriver: () => SandboxDriver | Promise<SandboxDriver>,
  options: ConformanceOptions,
): void {
  const run = `conf-${randomBytes(6).toString("hex")}`;
  const instance = `conformance-${run}`;
  const otherInstance = `conformance-${run}-other`;
  const probe = options.probe;

  let driver: SandboxDriver;
  let imageRef = "";
  let imageId = "";
  let runtimes: SandboxRuntimes;
  let socketDir = "";
  /** The sandbox most clauses look at: network none, read-only root, its agent socket directory. */
  let main: SandboxInfo;

  /** The options of a clause: skipped with the driver's reason or for lack of a probe. */
  const when = (clause: Clause, needs: { probe?: boolean } = {}): { skip?: string } => {
    const reason = options.skip?.[clause];
    if (reason !== undefined) return { skip: reason };
    if (needs.probe && !probe) return { skip: "lacks: a probe into the driver's sandboxes" };
    return {};
  };

  /** A spec as the core builds one for a code interpreter (sandbox-template.ts), on the test image. */
  const spec = (overrides: Partial<SandboxSpec> & { instance?: string } = {}): SandboxSpec => {
    const { instance: owner = instance, ...rest } = overrides;
    const networked = rest.network !== undefined && rest.network !== "none";
    const runtime = networked ? runtimes.networked : runtimes.isolated;
    return {
      image: imageId,
      labels: {
        ...buildLabels({ pool: `conformance/${run}`, instance: owner, kind: "code-interpreter" }),
        [RUN_LABEL]: run,
      },
      env: {},
      args: ["sleep", "300"],
      cpu: 0.5,
      memoryBytes: 128 * MiB,
      pidsLimit: 64 + runtimes.pidsOverhead,
      network: "none",
      user: "1000:1000",
      readOnlyRootfs: true,
      tmpfs: { "/tmp": MiB, "/mnt/data": 2 * MiB },
      init: true,
      ...(runtime !== undefined ? { runtime } : {}),
      ...(runtimes.seccompProfile !== undefined ? { seccompProfile: runtimes.seccompProfile } : {}),
      ...rest,
    };
  };

  const sh = (id: string, script: string) => probe!.exec(id, ["sh", "-c", script]);

  describe(`SandboxDriver conformance: ${name}`, () => {
    before(async () => {
      driver = await makeDriver();
      imageRef = await options.image();
      const image = await driver.getImage(imageRef);
      assert.ok(image, `the test image ${imageRef} is present`);
      // The core creates sandboxes from the image id it resolved, not from the reference.
      imageId = image.id;
      runtimes = chooseSandboxRuntimes(options.runtime ?? "auto", await driver.runtimes());
      socketDir = await mkdtemp(join(tmpdir(), "sessionpool-conformance-"));
      // The core chowns the directory to the sandbox's user; world-writable does here: only the mount's read-only
      // flag may then refuse the sandbox a write.
      await chmod(socketDir, 0o777);
      main = await driver.create(
        spec({
          env: { GREETING: "hello there", EMPTY: "" },
          agentSocketDir: socketDir,
          labels: { ...spec().labels, [LABEL_POOL]: `conformance/${run}/main` },
        }),
      );
    });

    after(async () => {
      // By label, never by name: whatever a failed clause left behind.
      if (driver) {
        try {
          for (const sandbox of await driver.list({ [RUN_LABEL]: run })) await driver.remove(sandbox.id);
        } finally {
          await driver.close();
        }
      }
      if (socketDir) await rm(socketDir, { recursive: true, force: true });
    });

    test(`engine: ${CLAUSES.engine}`, when("engine"), async (t) => {
      t.diagnostic(`sandboxes run under ${runtimes.name}; everything made carries ${RUN_LABEL}=${run}`);
      await driver.ping();
      await driver.ping({ signal: AbortSignal.timeout(10_000) });
      const listed = await driver.runtimes();
      assert.ok(listed.length > 0, "at least the engine's default runtime");
      for (const r of listed) {
        assert.equal(typeof r.name, "string");
        assert.ok(Array.isArray(r.args), `${r.name} has an args array`);
      }
      // The runtime the suite's sandboxes run under is one the engine listed.
      for (const wanted of [runtimes.isolated, runtimes.networked]) {
        if (wanted !== undefined)
          assert.ok(
            listed.some((r) => r.name === wanted),
            `${wanted} in ${JSON.stringify(listed)}`,
          );
      }
    });

    test(`unreachable: ${CLAUSES.unreachable}`, unreachableOptions(), async () => {
      const nowhere = options.makeUnreachableDriver!();
      await assert.rejects(nowhere.ping({ signal: AbortSignal.timeout(10_000) }), RuntimeUnavailableError);
      // Adoption at start tells "engine down, serve degraded" from a real failure by this class.
      await assert.rejects(nowhere.list({ [LABEL_MANAGED]: "true" }), RuntimeUnavailableError);
      await nowhere.close();
      await nowhere.close();

      const closed = await makeDriver();
      await closed.ping();
      await closed.close();
      await closed.close();
      await assert.rejects(closed.ping(), RuntimeUnavailableError);
      await assert.rejects(closed.list({ [RUN_LABEL]: run }), RuntimeUnavailableError);
    });

    function unreachableOptions(): { skip?: string } {
      const base = when("unreachable");
      if (base.skip === undefined && !options.makeUnreachableDriver)
        return { skip: "lacks: a way to make a driver whose engine is not there" };
      return base;
    }

    test(`images: ${CLAUSES.images}`, when("images"), async () => {
      const info = await driver.getImage(imageRef);
      assert.ok(info);
      assert.equal(info.ref, imageRef);
      assert.equal(typeof info.id, "string");
      assert.ok(info.id.length > 0);
      assert.equal(typeof info.labels, "object");
      assert.equal(await driver.getImage(`sessionpool-conformance/absent-${run}:0`), undefined);
    });

    describe(`pullErrors: ${CLAUSES.pullErrors}`, () => {
      let registry: TestRegistryHandle | undefined;
      const skip = when("pullErrors").skip ?? (options.registry ? undefined : "lacks: a test registry");
      before(async () => {
        if (skip === undefined) registry = await options.registry!();
      });
      after(async () => {
        await registry?.stop();
      });

      test("an image no registry serves is ImageNotFoundError", skip ? { skip } : {}, async () => {
        // Port 1 on loopback: nothing listens, so the engine cannot fetch it (no traffic leaves the host).
        await assert.rejects(
          driver.pullImage(`127.0.0.1:1/sessionpool-conformance/absent:${run}`),
          ImageNotFoundError,
        );
      });

      test(
        "refused credentials are ImagePullAuthError, never ImageNotFound",
        skip ? { skip } : {},
        async () => {
          const r = registry!;
          const ref = `${r.host}/sessionpool-conformance/private:${run}`;
          await assert.rejects(
            driver.pullImage(ref, { server: r.host, username: r.username, password: `${r.password}-wrong` }),
            ImagePullAuthError,
          );
          await assert.rejects(driver.pullImage(ref), ImagePullAuthError);
        },
      );
    });

    test(`create: ${CLAUSES.create}`, when("create"), async () => {
      assert.equal(main.state, "running");
      assert.equal(typeof main.id, "string");
      includesLabels(
        main.labels,
        spec({ labels: { ...spec().labels, [LABEL_POOL]: `conformance/${run}/main` } }).labels,
      );
      const inspected = await driver.inspect(main.id);
      assert.ok(inspected);
      assert.equal(inspected.id, main.id);
      assert.equal(inspected.state, "running");
      assert.deepEqual(inspected.labels, main.labels);
    });

    test(`list: ${CLAUSES.list}`, when("list"), async (t) => {
      t.diagnostic(`sandboxes carry ${RUN_LABEL}=${run}`);
      const other = await driver.create(
        spec({ instance: otherInstance, args: ["sh", "-c", "exit 0"], init: false }),
      );
      try {
        const own = await driver.list({
          [LABEL_MANAGED]: "true",
          [LABEL_INSTANCE]: instance,
          [RUN_LABEL]: run,
        });
        assert.ok(
          own.some((s) => s.id === main.id),
          "the instance's own sandbox is listed",
        );
        assert.ok(!own.some((s) => s.id === other.id), "another instance's sandbox is not");
        for (const s of own) assert.equal(s.labels[LABEL_INSTANCE], instance);

        const theirs = await driver.list({ [LABEL_INSTANCE]: otherInstance, [RUN_LABEL]: run });
        assert.deepEqual(
          theirs.map((s) => s.id),
          [other.id],
          "listed in any state (it may have exited already)",
        );
        includesLabels(theirs[0]!.labels, spec({ instance: otherInstance }).labels);

        const everything = await driver.list({ [RUN_LABEL]: run });
        for (const id of [main.id, other.id])
          assert.ok(
            everything.some((s) => s.id === id),
            `${id} in the run's list`,
          );
        assert.deepEqual(await driver.list({ [RUN_LABEL]: `${run}-nobody` }), []);
        assert.equal(await driver.inspect(`sessionpool-conformance-${run}-never-existed`), undefined);
      } finally {
        await driver.remove(other.id);
      }
    });

    test(`remove: ${CLAUSES.remove}`, when("remove"), async () => {
      const a = await driver.create(spec());
      const b = await driver.create(spec());
      await driver.remove(a.id);
      await driver.remove(a.id);
      await Promise.all([driver.remove(b.id), driver.remove(b.id)]);
      await driver.remove(`sessionpool-conformance-${run}-never-existed`);
      assert.equal(await driver.inspect(a.id), undefined);
      assert.equal(await driver.inspect(b.id), undefined);
      const left = await driver.list({ [RUN_LABEL]: run });
      assert.ok(!left.some((s) => s.id === a.id || s.id === b.id), JSON.stringify(left));
    });

    test(`exit: ${CLAUSES.exit}`, when("exit"), async () => {
      const log = new EventLog();
      const labels = { ...spec().labels, [LABEL_POOL]: `conformance/${run}/exit` };
      const unsubscribe = driver.watch({ [LABEL_POOL]: labels[LABEL_POOL]!, [RUN_LABEL]: run }, log.push);
      try {
        const info = await driver.create(spec({ labels, args: ["sh", "-c", "exit 3"] }));
        // The die event is how a driver says the process is over; after it, inspect and list agree.
        await log.next((e) => e.id === info.id && e.type === "die", "die event");
        const exited = await driver.inspect(info.id);
        assert.equal(exited?.state, "exited");
        assert.equal(exited?.exitCode, 3);
        const listed = await driver.list({ [LABEL_POOL]: labels[LABEL_POOL]!, [RUN_LABEL]: run });
        assert.equal(listed.length, 1);
        assert.equal(listed[0]?.state, "exited");
        assert.equal(listed[0]?.exitCode, 3);
        await driver.remove(info.id);
      } finally {
        unsubscribe();
      }
    });

    test(`events: ${CLAUSES.events}`, when("events"), async () => {
      const pool = `conformance/${run}/events`;
      const watched = { [LABEL_POOL]: pool, [LABEL_INSTANCE]: instance, [RUN_LABEL]: run };
      const log = new EventLog();
      const unsubscribe = driver.watch(watched, log.push);
      let unsubscribed = false;
      try {
        const labels = { ...spec().labels, [LABEL_POOL]: pool };
        // Another instance's sandbox in the same pool: its events must not reach this watcher.
        const stranger = await driver.create(
          spec({
            instance: otherInstance,
            labels: { ...spec({ instance: otherInstance }).labels, [LABEL_POOL]: pool },
          }),
        );
        const exiting = await driver.create(spec({ labels, args: ["sh", "-c", "exit 7"] }));
        const died = await log.next((e) => e.id === exiting.id && e.type === "die", "die event");
        assert.equal(died.exitCode, 7);
        includesLabels(died.labels, labels);

        await driver.remove(stranger.id);
        const running = await driver.create(spec({ labels }));
        await driver.remove(running.id);
        // One stream, in engine order: the stranger's events came before this one, had they been delivered.
        const destroyed = await log.next((e) => e.id === running.id && e.type === "destroy", "destroy event");
        includesLabels(destroyed.labels, labels);
        assert.deepEqual(
          log.events.filter((e) => e.id === stranger.id),
          [],
          "no events of a sandbox without the watched labels",
        );

        unsubscribe();
        unsubscribed = true;
        const seen = log.events.length;
        // A second watcher tells when the engine has reported what follows.
        const witness = new EventLog();
        const stopWitness = driver.watch(watched, witness.push);
        try {
          await driver.remove(exiting.id);
          await witness.next((e) => e.id === exiting.id && e.type === "destroy", "destroy event (witness)");
          assert.equal(log.events.length, seen, "no events after unsubscribing");
        } finally {
          stopWitness();
        }
      } finally {
        if (!unsubscribed) unsubscribe();
      }
    });

    test(`killed: ${CLAUSES.killed}`, when("killed", { probe: true }), async () => {
      const pool = `conformance/${run}/killed`;
      const labels = { ...spec().labels, [LABEL_POOL]: pool };
      const log = new EventLog();
      const unsubscribe = driver.watch({ [LABEL_POOL]: pool, [RUN_LABEL]: run }, log.push);
      try {
        const victim = await driver.create(spec({ labels }));
        await probe!.kill(victim.id);
        const died = await log.next((e) => e.id === victim.id && e.type === "die", "die event");
        includesLabels(died.labels, labels);
        assert.equal((await driver.inspect(victim.id))?.state, "exited");
        await driver.remove(victim.id);
        await log.next((e) => e.id === victim.id && e.type === "destroy", "destroy event");
      } finally {
        unsubscribe();
      }
    });

    test(`abort: ${CLAUSES.abort}`, when("abort"), async (t) => {
      t.diagnostic(`sandboxes carry ${RUN_LABEL}=${run}`);
      const reason = new Error("the caller gave up");
      const signal = AbortSignal.abort(reason);
      const calls: [string, () => Promise<unknown>][] = [
        ["ping", () => driver.ping({ signal })],
        ["runtimes", () => driver.runtimes({ signal })],
        ["getImage", () => driver.getImage(imageRef, { signal })],
        [
          "pullImage",
          () => driver.pullImage(`127.0.0.1:1/sessionpool-conformance/absent:${run}`, undefined, { signal }),
        ],
        [
          "create",
          () =>
            driver.create(spec({ labels: { ...spec().labels, [LABEL_POOL]: `conformance/${run}/abort` } }), {
              signal,
            }),
        ],
        ["inspect", () => driver.inspect(main.id, { signal })],
        ["list", () => driver.list({ [RUN_LABEL]: run }, { signal })],
        ["remove", () => driver.remove(`sessionpool-conformance-${run}-never-existed`, { signal })],
        ["memoryUsageBytes", () => driver.memoryUsageBytes(main.id, { signal })],
      ];
      if (driver.usage) calls.push(["usage", () => driver.usage!(main.id, { signal })]);
      for (const [what, call] of calls) {
        await assert.rejects(call(), (err) => err === reason, `${what} rejects with the signal's reason`);
      }
      assert.deepEqual(await driver.list({ [LABEL_POOL]: `conformance/${run}/abort`, [RUN_LABEL]: run }), []);
    });

    test(`abortMidway: ${CLAUSES.abortMidway}`, when("abortMidway"), async (t) => {
      t.diagnostic(`sandboxes carry ${RUN_LABEL}=${run}`);
      const pool = `conformance/${run}/abort-midway`;
      const labels = { ...spec().labels, [LABEL_POOL]: pool };
      // Aborts at several points of the create's engine calls (which points a driver has is its own business).
      for (const afterMs of [undefined, 1, 2, 4, 8, 16, 32]) {
        const controller = new AbortController();
        const reason = new Error(`cancelled mid-create (${afterMs ?? 0} ms)`);
        const creating = driver.create(spec({ labels }), { signal: controller.signal });
        if (afterMs === undefined) setImmediate(() => controller.abort(reason));
        else setTimeout(() => controller.abort(reason), afterMs);
        try {
          // Finished before the abort: then it is the caller's, like any other.
          await driver.remove((await creating).id);
        } catch (err) {
          assert.equal(err, reason, "rejects with the signal's reason");
        }
      }
      // A whole create and remove after the aborted ones: the engine has handled what it was sent before.
      await driver.remove((await driver.create(spec())).id);
      assert.deepEqual(
        (await driver.list({ [LABEL_POOL]: pool, [RUN_LABEL]: run })).map((s) => [s.id, s.state]),
        [],
        "nothing left behind",
      );
    });

    test(`failedCreate: ${CLAUSES.failedCreate}`, when("failedCreate"), async () => {
      const labels = { ...spec().labels, [LABEL_POOL]: `conformance/${run}/failed` };
      await assert.rejects(
        driver.create(spec({ labels, image: `sessionpool-conformance/absent-${run}:0` })),
        ImageNotFoundError,
      );
      await assert.rejects(
        driver.create(spec({ labels, runtime: "sessionpool-no-such-runtime" })),
        SandboxCreateError,
      );
      assert.deepEqual(await driver.list({ [LABEL_POOL]: labels[LABEL_POOL]!, [RUN_LABEL]: run }), []);
    });

    test(`spec: ${CLAUSES.spec}`, when("spec", { probe: true }), async () => {
      assert.equal((await probe!.exec(main.id, ["id", "-u"])).stdout, "1000");
      assert.equal((await probe!.exec(main.id, ["id", "-g"])).stdout, "1000");
      const env = (await probe!.exec(main.id, ["env"])).stdout.split("\n");
      assert.ok(env.includes("GREETING=hello there") && env.includes("EMPTY="), env.join(" "));
      // args replaced the image's command; init: PID 1 is an init that runs it, not the command itself.
      assert.match((await sh(main.id, "ps -o args")).stdout, /sleep 300/);
      assert.doesNotMatch((await probe!.exec(main.id, ["cat", "/proc/1/cmdline"])).stdout, /^sleep/);

      // Writable only where the spec says (the read-only root itself is checked as root under "rootfs").
      assert.notEqual((await sh(main.id, "echo x > /etc/x")).exitCode, 0, "/etc is not writable");
      assert.equal((await sh(main.id, "echo ok > /tmp/a && cat /tmp/a")).stdout, "ok");
      assert.equal((await sh(main.id, "echo ok > /mnt/data/a && cat /mnt/data/a")).stdout, "ok");
      const script =
        "printf '#!/bin/sh\\necho ran\\n' > /mnt/data/s.sh && chmod +x /mnt/data/s.sh && /mnt/data/s.sh";
      assert.equal((await sh(main.id, script)).stdout, "ran", "scripts run from the tmpfs mounts");
      assert.notEqual(
        (await sh(main.id, "dd if=/dev/zero of=/tmp/big bs=64k count=32")).exitCode,
        0,
        "/tmp holds 1 MiB",
      );
      assert.notEqual(
        (await sh(main.id, "dd if=/dev/zero of=/mnt/data/big bs=64k count=48")).exitCode,
        0,
        "/mnt/data holds 2 MiB",
      );
      await sh(main.id, "rm -f /tmp/big /mnt/data/big");
      assert.equal((await probe!.exec(main.id, ["ls", "/sys/class/net"])).stdout, "lo");
    });

    test(`rootfs: ${CLAUSES.rootfs}`, when("rootfs", { probe: true }), async () => {
      // As root (the image's user), so only the mount's read-only flag can refuse a write to /.
      const readOnly = await driver.create(spec({ user: undefined }));
      const writable = await driver.create(spec({ user: undefined, readOnlyRootfs: false, tmpfs: {} }));
      try {
        const refused = await sh(readOnly.id, "touch /x");
        assert.notEqual(refused.exitCode, 0, "readOnlyRootfs: true refuses a write to /");
        assert.match(refused.stderr, /read-only/i);
        assert.equal((await sh(writable.id, "touch /x && echo ok")).stdout, "ok");
      } finally {
        await Promise.all([driver.remove(readOnly.id), driver.remove(writable.id)]);
      }
    });

    test(`agentSocketDir: ${CLAUSES.agentSocketDir}`, when("agentSocketDir", { probe: true }), async () => {
      await writeFile(join(socketDir, "probe"), "from-the-host", { mode: 0o644 });
      assert.equal((await sh(main.id, "cat /run/sessionpool/probe")).stdout, "from-the-host");
      const write = await sh(main.id, "echo from-inside > /run/sessionpool/written");
      assert.notEqual(write.exitCode, 0);
      assert.match(write.stderr, /read-only/i);
    });

    test(`limits: ${CLAUSES.limits}`, when("limits", { probe: true }), async () => {
      const wanted = spec();
      assert.deepEqual(await probe!.limits(main.id), {
        memoryBytes: wanted.memoryBytes,
        pids: wanted.pidsLimit,
        cpu: wanted.cpu,
      });
    });

    test(`network: ${CLAUSES.network}`, when("network", { probe: true }), async () => {
      if (runtimes.networkedUnavailable !== undefined) {
        assert.fail(`networked sandboxes cannot run here: ${runtimes.networkedUnavailable}`);
      }
      const serve =
        "mkdir -p /tmp/www && echo hello-from-the-sandbox > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
      const served = await driver.create(
        spec({ network: "internal", args: ["sh", "-c", serve], targetPort: 8080 }),
      );
      try {
        assert.ok(served.address, "a networked sandbox has an address");
        assert.notEqual((await probe!.exec(served.id, ["ls", "/sys/class/net"])).stdout, "lo");
        assert.equal(await fetchWhenListening(`http://${served.address}:8080/`), "hello-from-the-sandbox");
        assert.equal(main.address, undefined, "network none has no address");
      } finally {
        await driver.remove(served.id);
      }
    });

    test(`usage: ${CLAUSES.usage}`, when("usage"), async () => {
      const memory = await driver.memoryUsageBytes(main.id);
      assert.ok(memory === undefined || (memory > 0 && memory <= spec().memoryBytes), `memory ${memory}`);
      if (driver.usage) {
        const usage = await driver.usage(main.id, { timeoutMs: 5_000 });
        assert.ok(usage, "a running sandbox has usage");
        assert.ok(usage.cpuSeconds === null || usage.cpuSeconds >= 0, JSON.stringify(usage));
        assert.ok(
          usage.memoryBytes === null || (usage.memoryBytes > 0 && usage.memoryBytes <= spec().memoryBytes),
          JSON.stringify(usage),
        );
      }
      const gone = await driver.create(spec());
      await driver.remove(gone.id);
      assert.equal(await driver.memoryUsageBytes(gone.id), undefined);
      if (driver.usage) assert.equal(await driver.usage(gone.id), undefined);
    });
  });
}

/** The sandbox's server starts after create returns: connection refusals until it listens (bounded). */
async function fetchWhenListening(url: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      return (await response.text()).trim();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
