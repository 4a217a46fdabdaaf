// The sessions of one pool (its data plane's /listSessions): created, last used, expires; stop or delete one.
import { useState } from "preact/hooks";
import type { Api, Pool, SessionInfo } from "./api.ts";
import { errorText, formatTime, poolHref, usePoll } from "./util.ts";

export function SessionsView({
  api,
  resourceGroup,
  name,
}: {
  api: Api;
  resourceGroup: string;
  name: string;
}) {
  const [pool, setPool] = useState<Pool>();
  const [sessions, setSessions] = useState<SessionInfo[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();

  const refresh = async () => {
    try {
      const p = pool ?? (await api.getPool(resourceGroup, name));
      setPool(p);
      setSessions(await api.listSessions(p));
      setError(undefined);
    } catch (err) {
      setError(errorText(err));
    }
  };
  usePoll(refresh, 3000, [api, resourceGroup, name]);

  const act = async (s: SessionInfo, how: "stop" | "delete") => {
    if (!pool) return;
    try {
      if (how === "stop") {
        await api.dataPlane(pool, "POST", "/.management/stopSession", { identifier: s.identifier });
      } else {
        await api.dataPlane(pool, "DELETE", "/session", { identifier: s.identifier });
      }
      setNotice(`Session ${s.identifier} ${how === "stop" ? "stopped" : "deleted"}.`);
      await refresh();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <section aria-labelledby="sessions-title">
      <div class="title">
        <h1 id="sessions-title">Sessions of {name}</h1>
        <a href="#/pools">All pools</a>
        {pool?.properties.containerType !== "CustomContainer" && (
          <a href={poolHref("playground", resourceGroup, name)}>Playground</a>
        )}
      </div>
      <p class="hint">
        Resource group {resourceGroup}
        {pool && ` · ${pool.properties.containerType} · ${pool.properties.provisioningState}`}
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p role="status" class="notice">
        {notice}
      </p>
      {sessions === undefined ? (
        <p>Loading…</p>
      ) : sessions.length === 0 ? (
        <p>No sessions: one starts when an identifier is first used (try the playground).</p>
      ) : (
        <table>
          <caption class="sr-only">Sessions of pool {name}</caption>
          <thead>
            <tr>
              <th scope="col">Identifier</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {sessions.map((s) => (
              <tr key={s.identifier}>
                <th scope="row">{s.identifier}</th>
                <td>{formatTime(s.createdAt)}</td>
                <td>{formatTime(s.lastAccessedAt)}</td>
                <td>{formatTime(s.expireAt)}</td>
                <td class="row-actions">
                  <button
                    type="button"
                    class="secondary"
                    aria-label={`Stop ${s.identifier}`}
                    onClick={() => act(s, "stop")}
                  >
                    Stop
                  </button>
                  <button
                    type="button"
                    class="danger"
                    aria-label={`Delete ${s.identifier}`}
                    onClick={() => act(s, "delete")}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
