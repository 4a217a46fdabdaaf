// Session pools as ARM resources: create/update/patch/delete with long-running operations, persisted so they
// survive restarts. Provisioning itself is the PoolProvisioner's job (image present, ready sessions warm); this
// service records what was asked, runs one provisioning per pool at a time (a newer generation supersedes an
// older one) and settles the operations waiting on it.
import type { Logger } from "pino";
import type { Principal } from "../../auth/principal.ts";
import { isSessionPoolError } from "../../errors.ts";
import type { Store, StoredOperation, StoredPool } from "../../store/store.ts";
import { PoolBeingDeletedError, PoolNotFoundError } from "../errors.ts";
import { ARM_API_VERSIONS } from "./api-versions.ts";
import {
  type PoolDoc,
  type PoolRef,
  poolDocOf,
  poolKey,
  poolResourceId,
  type SystemData,
} from "./pool-doc.ts";
import { checkPreconditions } from "./pool-preconditions.ts";
import type { PoolSecrets } from "./pool-secrets.ts";
import { type PoolChange, type PoolRules, parsePoolBody, poolFromPatch, poolFromPut } from "./pool-spec.ts";
import { validatePoolName } from "./pool-validation.ts";

/** What actually runs a pool. Resolves when the pool is ready; rejects with the reason it cannot be. */
export interface PoolProvisioner {
  provision(pool: StoredPool, signal: AbortSignal): Promise<void>;
  /** Destroys everything the pool runs; idempotent. */
  deprovision(poolKey: string, signal: AbortSignal): Promise<void>;
  /** Throws (a 400) when the pool could never run here, before anything is stored. */
  admit?(doc: PoolDoc): void;
}

/** How the data plane finds the pool an endpoint names, without the store behind it. */
export interface PoolLookup {
  /** The pool stored under `key` (in any provisioning state, Deleting included), or undefined. */
  findPool(key: string): Promise<StoredPool | undefined>;
}

/**
 * The codes of an operation that ended without a more specific error's code (an operation's `error`, and the
 * pool's provisioningError); a failed provisioning otherwise carries its error's own code.
 */
export const OPERATION_FAILURE_CODES = ["ProvisioningFailed", "DeleteFailed", "Canceled"] as const;

export const NOOP_PROVISIONER: PoolProvisioner = {
  provision: async () => {},
  deprovision: async () => {},
};

export interface PoolServiceDeps {
  store: Store;
  secrets: PoolSecrets;
  provisioner: PoolProvisioner;
  rules: PoolRules;
  now: () => Date;
  logger: Logger;
}

interface ProvisionRun {
  generation: number;
  controller: AbortController;
  done: Promise<void>;
}

export interface WriteResult {
  pool: StoredPool;
  operation: StoredOperation;
  created: boolean;
}

export class PoolService implements PoolLookup {
  readonly #d: PoolServiceDeps;
  readonly #runs = new Map<string, ProvisionRun>();
  /** The generation of each pool this server provisions (a fleet's sync compares the store's with it). */
  readonly #provisioned = new Map<string, number>();
  readonly #deleting = new Set<string>();
  #syncTimer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #closed = false;

  constructor(deps: PoolServiceDeps) {
    this.#d = deps;
  }

  findPool(key: string): Promise<StoredPool | undefined> {
    return this.#d.store.getPool(key);
  }

  async get(ref: PoolRef): Promise<StoredPool> {
    const pool = await this.#d.store.getPool(poolKey(ref));
    if (!pool) throw new PoolNotFoundError(ref.resourceGroup, ref.name);
    return pool;
  }

  /**
   * The uid of the pool under `key` while it exists and is not being deleted: what a data-plane token must name.
   * Once a deletion is accepted, the pool's tokens are refused, even before its sessions are gone.
   */
  async liveUid(key: string): Promise<string | undefined> {
    const pool = await this.#d.store.getPool(key);
    if (!pool || poolDocOf(pool).properties.provisioningState === "Deleting") return undefined;
    return pool.uid;
  }

  async list(
    filter: { subscriptionId: string; resourceGroup?: string },
    afterKey: string | undefined,
    limit: number,
  ) {
    const page = await this.#d.store.listPools(filter, {
      ...(afterKey ? { afterKey } : {}),
      limit: limit + 1,
    });
    const items = page.slice(0, limit);
    const last = items.at(-1);
    return { items, nextAfterKey: page.length > limit && last ? last.key : undefined };
  }

  put(
    ref: PoolRef,
    body: unknown,
    ctx: { principal: Principal; apiVersion: string; ifMatch?: string; ifNoneMatch?: string },
  ): Promise<WriteResult> {
    validatePoolName(ref.name);
    const input = parsePoolBody(body);
    const key = poolKey(ref);
    return this.#d.store
      .transaction(async () => {
        const existing = await this.#d.store.getPool(key, { forUpdate: true });
        checkPreconditions(existing, ctx.ifMatch, ctx.ifNoneMatch);
        if (existing && poolDocOf(existing).properties.provisioningState === "Deleting") {
          throw new PoolBeingDeletedError(
            `The session pool '${ref.name}' is being deleted; retry when the deletion finishes.`,
          );
        }
        const existingDoc = existing?.doc as PoolDoc | undefined;
        const change = poolFromPut(input, {
          name: ref.name,
          rules: this.#d.rules,
          systemData: this.#systemData(ctx.principal, existingDoc?.systemData),
          ...(existingDoc ? { existing: existingDoc } : {}),
          secretNames: await this.#d.secrets.names(key),
          mcpDefined: ARM_API_VERSIONS[ctx.apiVersion]?.mcp ?? true,
        });
        this.#d.provisioner.admit?.(change.doc);
        return this.#write(ref, existing, change, existing ? "update" : "create", ctx.apiVersion);
      })
      .then((result) => this.#written(result));
  }

  patch(
    ref: PoolRef,
    body: unknown,
    ctx: { principal: Principal; apiVersion: string; ifMatch?: string },
  ): Promise<WriteResult> {
    const key = poolKey(ref);
    return this.#d.store
      .transaction(async () => {
        const existing = await this.#d.store.getPool(key, { forUpdate: true });
        if (!existing) throw new PoolNotFoundError(ref.resourceGroup, ref.name);
        checkPreconditions(existing, ctx.ifMatch, undefined);
        const existingDoc = poolDocOf(existing);
        if (existingDoc.properties.provisioningState === "Deleting") {
          throw new PoolBeingDeletedError(`The session pool '${ref.name}' is being deleted.`);
        }
        const change = poolFromPatch(body, {
          name: ref.name,
          rules: this.#d.rules,
          systemData: this.#systemData(ctx.principal, existingDoc.systemData),
          existing: existingDoc,
          secretNames: await this.#d.secrets.names(key),
        });
        this.#d.provisioner.admit?.(change.doc);
        return this.#write(ref, existing, change, "update", ctx.apiVersion);
      })
      .then((result) => this.#written(result));
  }

  /** Starts deleting; undefined when there is nothing to delete (ARM answers 204). */
  async delete(
    ref: PoolRef,
    ctx: { apiVersion: string; ifMatch?: string },
  ): Promise<StoredOperation | undefined> {
    const key = poolKey(ref);
    const started = await this.#d.store.transaction(async () => {
      const existing = await this.#d.store.getPool(key, { forUpdate: true });
      if (!existing) return undefined;
      checkPreconditions(existing, ctx.ifMatch, undefined);
      // What the store hands out is read-only (it may be shared); the change is made on a copy.
      const doc = structuredClone(poolDocOf(existing));
      const now = this.#d.now().toISOString();
      const pending = await this.#d.store.listOperations({ poolKey: key, status: "InProgress" });
      const running = pending.find((o) => o.kind === "delete");
      if (running) return { op: running, existing, fresh: false };
      const op = this.#newOperation(existing, "delete", ctx.apiVersion);
      for (const o of pending) {
        await this.#d.store.putOperation({
          ...o,
          status: "Canceled",
          endTime: now,
          error: { code: "Canceled", message: "The session pool was deleted." },
        });
      }
      doc.properties.provisioningState = "Deleting";
      await this.#d.store.putPool({ ...existing, doc: doc, updatedAt: now });
      await this.#d.store.putOperation(op);
      return { op, existing, fresh: true };
    });
    if (!started) return undefined;
    if (started.fresh) {
      this.#runs.get(key)?.controller.abort();
      void this.#runDelete(started.existing, started.op);
    }
    return started.op;
  }

  getOperation(id: string): Promise<StoredOperation | undefined> {
    return this.#d.store.getOperation(id);
  }

  /** Resumes what a restart interrupted: provisioning of pools in progress, deletions under way. */
  async resume(): Promise<void> {
    for (const pool of await this.#d.store.allPools()) {
      const state = poolDocOf(pool).properties.provisioningState;
      const pending = await this.#d.store.listOperations({ poolKey: pool.key, status: "InProgress" });
      const deleting = pending.find((o) => o.kind === "delete");
      if (state === "Deleting" || deleting) {
        void this.#runDelete(
          pool,
          deleting ?? (await this.#persist(this.#newOperation(pool, "delete", "2025-07-01"))),
        );
      } else if (state === "InProgress" || pending.length > 0) {
        this.#startProvision(pool);
      } else {
        // Keep ready sessions warm for pools that were fine before the restart.
        this.#startProvision(pool, { quiet: true });
      }
    }
    // Operations whose pool vanished (deleted while the server was down mid-write) cannot finish.
    for (const op of await this.#d.store.listOperations({ status: "InProgress" })) {
      if (!(await this.#d.store.getPool(op.poolKey))) {
        const now = this.#d.now().toISOString();
        const done = op.kind === "delete";
        await this.#d.store.putOperation({
          ...op,
          status: done ? "Succeeded" : "Canceled",
          endTime: now,
          error: done ? undefined : { code: "Canceled", message: "The session pool no longer exists." },
        });
      }
    }
  }

  /**
   * A fleet: every server provisions every pool (its share of the ready sandboxes), whichever server took the PUT.
   * Each sync reads the pools from the store and starts what changed here: a new pool or generation is
   * provisioned, a pool being deleted is deleted here too (finishing another server's deletion is harmless), and a
   * pool gone from the store is deprovisioned.
   */
  async sync(): Promise<void> {
    if (this.#closed) return;
    const stored = await this.#d.store.allPools();
    const seen = new Set<string>();
    for (const pool of stored) {
      seen.add(pool.key);
      const state = poolDocOf(pool).properties.provisioningState;
      if (state === "Deleting") {
        if (this.#deleting.has(pool.key)) continue;
        const pending = await this.#d.store.listOperations({ poolKey: pool.key, status: "InProgress" });
        const op = pending.find((o) => o.kind === "delete");
        if (op) void this.#runDelete(pool, op);
        continue;
      }
      if (this.#provisioned.get(pool.key) !== pool.generation) {
        this.#startProvision(pool, { quiet: state !== "InProgress" });
      }
    }
    for (const key of [...this.#provisioned.keys()]) {
      if (seen.has(key) || this.#deleting.has(key)) continue;
      this.#provisioned.delete(key);
      this.#runs.get(key)?.controller.abort();
      await this.#d.provisioner
        .deprovision(key, new AbortController().signal)
        .catch((err) =>
          this.#d.logger.warn({ err, pool: key }, "could not remove a deleted pool's sandboxes"),
        );
    }
  }

  /** Syncs with the store every `intervalMs` (a fleet); errors are logged and the next round tries again. */
  startSync(intervalMs: number): void {
    this.#syncTimer = setInterval(() => {
      this.#syncing ??= this.sync()
        .catch((err) => this.#d.logger.warn({ err }, "could not read the pools from the store"))
        .finally(() => {
          this.#syncing = undefined;
        });
    }, intervalMs);
    this.#syncTimer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#syncTimer) clearInterval(this.#syncTimer);
    await this.#syncing;
    const runs = [...this.#runs.values()];
    for (const run of runs) run.controller.abort();
    await Promise.allSettled(runs.map((r) => r.done));
  }

  async #write(
    ref: PoolRef,
    existing: StoredPool | undefined,
    change: PoolChange,
    kind: "create" | "update",
    apiVersion: string,
  ): Promise<WriteResult> {
    const key = poolKey(ref);
    const now = this.#d.now().toISOString();
    change.doc.properties.provisioningState = "InProgress";
    delete change.doc.properties.provisioningError;
    const pool: StoredPool = {
      key,
      subscriptionId: existing?.subscriptionId ?? ref.subscriptionId,
      resourceGroup: existing?.resourceGroup ?? ref.resourceGroup,
      name: ref.name,
      doc: change.doc,
      etag: crypto.randomUUID(),
      generation: (existing?.generation ?? 0) + 1,
      // A new uid for a new pool only: updates keep it, so the pool's data-plane tokens stay valid.
      uid: existing?.uid ?? crypto.randomUUID(),
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    const op = this.#newOperation(pool, kind, apiVersion);
    // Part of the caller's transaction: the pool read, its change and the operation commit together.
    await this.#d.store.putPool(pool);
    if (change.secrets)
      await this.#d.store.replaceSecrets(key, await this.#d.secrets.seal(key, change.secrets));
    await this.#d.store.putOperation(op);
    return { pool, operation: op, created: !existing };
  }

  /** After the write committed: say so and start provisioning. */
  #written(result: WriteResult): WriteResult {
    const { pool, operation: op } = result;
    this.#log(pool).info(
      { generation: pool.generation, operation: op.id, kind: op.kind },
      "session pool %s",
      op.kind === "create" ? "created" : "updated",
    );
    this.#startProvision(pool);
    return result;
  }

  #newOperation(pool: StoredPool, kind: StoredOperation["kind"], apiVersion: string): StoredOperation {
    return {
      id: crypto.randomUUID(),
      poolKey: pool.key,
      resourceId: poolResourceId(pool),
      kind,
      status: "InProgress",
      generation: pool.generation,
      location: poolDocOf(pool).location,
      apiVersion,
      startTime: this.#d.now().toISOString(),
      endTime: undefined,
      error: undefined,
    };
  }

  async #persist(op: StoredOperation): Promise<StoredOperation> {
    await this.#d.store.putOperation(op);
    return op;
  }

  #systemData(principal: Principal, previous: SystemData | undefined): SystemData {
    const now = this.#d.now().toISOString();
    return {
      createdBy: previous?.createdBy ?? principal.name,
      createdByType: previous?.createdByType ?? principal.nameType,
      createdAt: previous?.createdAt ?? now,
      lastModifiedBy: principal.name,
      lastModifiedByType: principal.nameType,
      lastModifiedAt: now,
    };
  }

  #log(pool: { key: string }): Logger {
    return this.#d.logger.child({ pool: pool.key });
  }

  #startProvision(pool: StoredPool, options: { quiet?: boolean } = {}): void {
    if (this.#closed) return;
    const previous = this.#runs.get(pool.key);
    previous?.controller.abort();
    const controller = new AbortController();
    const run: ProvisionRun = { generation: pool.generation, controller, done: Promise.resolve() };
    this.#provisioned.set(pool.key, pool.generation);
    run.done = (async () => {
      if (previous) await previous.done.catch(() => {});
      if (controller.signal.aborted) return;
      let failure: { code: string; message: string } | undefined;
      try {
        await this.#d.provisioner.provision(pool, controller.signal);
      } catch (err) {
        if (controller.signal.aborted) return;
        failure = isSessionPoolError(err)
          ? { code: err.code, message: err.message }
          : { code: "ProvisioningFailed", message: err instanceof Error ? err.message : String(err) };
        this.#log(pool).warn({ err: failure }, "session pool provisioning failed");
      }
      if (controller.signal.aborted) return;
      await this.#settle(pool.key, pool.generation, failure, options.quiet === true).catch((err) =>
        // The store is unreachable or failing: the operation stays InProgress and the next start resumes it.
        this.#log(pool).error({ err }, "could not record the end of provisioning"),
      );
    })();
    this.#runs.set(pool.key, run);
    void run.done.finally(() => {
      if (this.#runs.get(pool.key) === run) this.#runs.delete(pool.key);
    });
  }

  async #settle(
    key: string,
    generation: number,
    failure: { code: string; message: string } | undefined,
    quiet: boolean,
  ): Promise<void> {
    const now = this.#d.now().toISOString();
    await this.#d.store.transaction(async () => {
      const current = await this.#d.store.getPool(key, { forUpdate: true });
      if (!current || current.generation !== generation) return;
      const doc = structuredClone(poolDocOf(current));
      if (doc.properties.provisioningState === "Deleting") return;
      const state = failure ? "Failed" : "Succeeded";
      if (doc.properties.provisioningState !== state || (failure && !quiet)) {
        doc.properties.provisioningState = state;
        if (failure) doc.properties.provisioningError = failure;
        else delete doc.properties.provisioningError;
        await this.#d.store.putPool({ ...current, doc: doc, updatedAt: now });
      }
      for (const op of await this.#d.store.listOperations({ poolKey: key, status: "InProgress" })) {
        if (op.kind === "delete" || op.generation > generation) continue;
        await this.#d.store.putOperation({
          ...op,
          status: failure ? "Failed" : "Succeeded",
          endTime: now,
          error: failure,
        });
      }
    });
    this.#d.logger
      .child({ pool: key })
      .info({ generation, state: failure ? "Failed" : "Succeeded" }, "session pool provisioned");
  }

  async #runDelete(pool: StoredPool, op: StoredOperation): Promise<void> {
    if (this.#deleting.has(pool.key)) return;
    this.#deleting.add(pool.key);
    try {
      await this.#delete(pool, op);
    } finally {
      this.#deleting.delete(pool.key);
    }
  }

  async #delete(pool: StoredPool, op: StoredOperation): Promise<void> {
    const previous = this.#runs.get(pool.key);
    previous?.controller.abort();
    await previous?.done.catch(() => {});
    const controller = new AbortController();
    try {
      await this.#d.provisioner.deprovision(pool.key, controller.signal);
      await this.#d.store.transaction(async () => {
        for (const s of await this.#d.store.listSessions(pool.key)) await this.#d.store.deleteSession(s.id);
        await this.#d.store.deletePool(pool.key);
        await this.#d.store.putOperation({
          ...op,
          status: "Succeeded",
          endTime: this.#d.now().toISOString(),
        });
      });
      this.#provisioned.delete(pool.key);
      this.#log(pool).info({ operation: op.id }, "session pool deleted");
    } catch (err) {
      // Keep the pool in Deleting; the operation fails with the reason and a later DELETE retries.
      const error = { code: "DeleteFailed", message: err instanceof Error ? err.message : String(err) };
      await this.#d.store
        .putOperation({ ...op, status: "Failed", endTime: this.#d.now().toISOString(), error })
        .catch((e) => this.#log(pool).error({ err: e }, "could not record the failed deletion"));
      this.#log(pool).error({ err: error }, "session pool deletion failed");
    }
  }
}
