// The sessions of one pool (its data plane's /listSessions): created, last used, expires; stop or delete one.
import { useState } from "preact/hooks";
import type { Pool, SessionInfo } from "./api.ts";
import { ErrorBanner, ItemTable, type PoolViewProps, RowButton, View } from "./ui.tsx";
import { formatTime, poolHref, usePolled } from "./util.ts";

export function SessionsView({ api, resourceGroup, name }: PoolViewProps) {
  const [pool, setPool] = useState<Pool>();
  const [sessions, setSessions] = useState<SessionInfo[]>();
  const [notice, setNotice] = useState<string>();

  const { error, attempt, refresh } = usePolled(
    async () => {
      const p = pool ?? (await api.getPool(resourceGroup, name));
      setPool(p);
      setSessions(await api.listSessions(p));
    },
    3000,
    [api, resourceGroup, name],
  );

  const act = (s: SessionInfo, how: "stop" | "delete") =>
    attempt(async () => {
      if (!pool) return;
      if (how === "stop") {
        await api.dataPlane(pool, "POST", "/.management/stopSession", { identifier: s.identifier });
      } else {
        await api.dataPlane(pool, "DELETE", "/session", { identifier: s.identifier });
      }
      setNotice(`Session ${s.identifier} ${how === "stop" ? "stopped" : "deleted"}.`);
      await refresh();
    });

  return (
    <View
      id="sessions"
      title={`Sessions of ${name}`}
      bar={
        <>
          <a href="#/pools">All pools</a>
          {pool?.properties.containerType !== "CustomContainer" && (
            <a href={poolHref("playground", resourceGroup, name)}>Playground</a>
          )}
        </>
      }
    >
      <p class="hint">
        Resource group {resourceGroup}
        {pool && ` · ${pool.properties.containerType} · ${pool.properties.provisioningState}`}
      </p>
      <ErrorBanner error={error} />
      <p role="status" class="notice">
        {notice}
      </p>
      <ItemTable
        items={sessions}
        loading={<p>Loading…</p>}
        empty={<p>No sessions: one starts when an identifier is first used (try the playground).</p>}
        caption={`Sessions of pool ${name}`}
        columns={["Identifier", "Created", "Last used", "Expires"]}
        row={(s) => ({
          key: s.identifier,
          header: s.identifier,
          cells: [formatTime(s.createdAt), formatTime(s.lastAccessedAt), formatTime(s.expireAt)],
          actions: (
            <>
              <RowButton kind="secondary" label={`Stop ${s.identifier}`} onClick={() => act(s, "stop")}>
                Stop
              </RowButton>
              <RowButton kind="danger" label={`Delete ${s.identifier}`} onClick={() => act(s, "delete")}>
                Delete
              </RowButton>
            </>
          ),
        })}
      />
    </View>
  );
}
