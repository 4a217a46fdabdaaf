// Which `pg` errors a caller sees as StorageUnavailable (503, Retry-After), and which pass through as they are.
import assert from "node:assert/strict";
import { it } from "node:test";
import { brokeConnection, pgFailure } from "../../src/store/postgres/pg-failures.ts";
import { StorageUnavailableError } from "../../src/store/storage-errors.ts";

const coded = (code: string, message = `failure ${code}`) => Object.assign(new Error(message), { code });

const TABLE: Array<[string, unknown, "unreachable" | "busy" | undefined]> = [
  ["connection refused", coded("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:5432"), "unreachable"],
  ["connection reset", coded("ECONNRESET"), "unreachable"],
  ["connect timed out", coded("ETIMEDOUT"), "unreachable"],
  ["unknown host", coded("ENOTFOUND", "getaddrinfo ENOTFOUND db"), "unreachable"],
  [
    "every address of a name refused",
    new AggregateError([coded("ECONNREFUSED", "connect ECONNREFUSED ::1:5432")], ""),
    "unreachable",
  ],
  ["08006 connection failure", coded("08006"), "unreachable"],
  [
    "57P01 admin shutdown",
    coded("57P01", "terminating connection due to administrator command"),
    "unreachable",
  ],
  ["57P02 crash shutdown", coded("57P02"), "unreachable"],
  ["57P03 cannot connect now", coded("57P03", "the database system is starting up"), "unreachable"],
  ["connection cut under a query", new Error("Connection terminated unexpectedly"), "unreachable"],
  [
    "a broken client",
    new Error("Client has encountered a connection error and is not queryable"),
    "unreachable",
  ],
  ["53100 disk full", coded("53100"), "busy"],
  ["53300 too many connections", coded("53300"), "busy"],
  ["57014 statement timeout", coded("57014"), "busy"],
  ["40P01 deadlock", coded("40P01"), "busy"],
  ["every pooled connection busy", new Error("timeout exceeded when trying to connect"), "busy"],
  ["23505 unique violation", coded("23505"), undefined],
  ["42P01 undefined table", coded("42P01"), undefined],
  ["our own close()", new Error("Connection terminated"), undefined],
  ["a plain error", new Error("boom"), undefined],
  ["not an error", "boom", undefined],
];

for (const [what, err, problem] of TABLE) {
  it(`${what}: ${problem ?? "passes through"}`, () => {
    const failure = pgFailure(err);
    assert.equal(failure?.problem, problem);
    assert.equal(brokeConnection(err), problem === "unreachable");
    if (failure) {
      assert.ok(failure instanceof StorageUnavailableError);
      assert.equal(failure.statusCode, 503);
      assert.equal(failure.headers["retry-after"], "10");
      assert.equal(failure.cause, err);
    }
  });
}

it("words a lost database as one, and keeps the data-dir wording of the embedded store", () => {
  assert.equal(
    pgFailure(coded("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:5432"))?.message,
    "The server cannot reach its database (connect ECONNREFUSED 127.0.0.1:5432). Retry once the database is reachable again.",
  );
  assert.equal(
    new StorageUnavailableError("full", "SQLite: database or disk is full").message,
    "The server cannot write its data directory: its disk is full (SQLite: database or disk is full). Nothing was changed; retry once an operator has fixed the storage.",
  );
});

it("leaves a StorageUnavailableError as it is", () => {
  const err = new StorageUnavailableError("io", "x");
  assert.equal(pgFailure(err), err);
});
