// Pools: the list across every resource group (state, ready/allocated from /metrics, max), create, edit scale
// and lifecycle, delete with confirmation. Refreshed every 2 s, so provisioning states change as they happen.
import { useId, useRef, useState } from "preact/hooks";
import { type Api, type Pool, poolKey } from "./api.ts";
import { parseMetrics, poolGauges } from "./metrics.ts";
import { errorText, poolHref, usePoll } from "./util.ts";

const TYPES = ["PythonLTS", "NodeLTS", "Shell", "CustomContainer"];

interface Form {
  name: string;
  resourceGroup: string;
  containerType: string;
  maxConcurrentSessions: string;
  readySessionInstances: string;
  lifecycleType: string;
  cooldownPeriodInSeconds: string;
  maxAlivePeriodInSeconds: string;
  network: string;
  image: string;
  targetPort: string;
}

const EMPTY: Form = {
  name: "",
  resourceGroup: "demo",
  containerType: "PythonLTS",
  maxConcurrentSessions: "10",
  readySessionInstances: "1",
  lifecycleType: "Timed",
  cooldownPeriodInSeconds: "300",
  maxAlivePeriodInSeconds: "3600",
  network: "EgressDisabled",
  image: "",
  targetPort: "8080",
};

/** Numbers as typed: the API validates them and answers with its own message (a text is sent as it is). */
function num(text: string): number | string {
  return text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
}

function lifecycleOf(f: Form): Record<string, unknown> {
  return f.lifecycleType === "OnContainerExit"
    ? { lifecycleType: "OnContainerExit", maxAlivePeriodInSeconds: num(f.maxAlivePeriodInSeconds) }
    : { lifecycleType: "Timed", cooldownPeriodInSeconds: num(f.cooldownPeriodInSeconds) };
}

function createBody(f: Form): Record<string, unknown> {
  return {
    location: "local",
    properties: {
      containerType: f.containerType,
      poolManagementType: "Dynamic",
      scaleConfiguration: {
        maxConcurrentSessions: num(f.maxConcurrentSessions),
        readySessionInstances: num(f.readySessionInstances),
      },
      dynamicPoolConfiguration: { lifecycleConfiguration: lifecycleOf(f) },
      sessionNetworkConfiguration: { status: f.network },
      ...(f.containerType === "CustomContainer"
        ? {
            customContainerTemplate: {
              containers: [{ name: "main", image: f.image, resources: { cpu: 0.5, memory: "1Gi" } }],
              ingress: { targetPort: num(f.targetPort) },
            },
          }
        : {}),
    },
  };
}

function Field(props: {
  label: string;
  value: string;
  onInput: (v: string) => void;
  type?: "text" | "number";
  name: string;
}) {
  const id = useId();
  const onInput = (e: { currentTarget: HTMLInputElement }) => props.onInput(e.currentTarget.value);
  return (
    <label for={id}>
      {props.label}
      {props.type === "number" ? (
        <input id={id} type="number" name={props.name} value={props.value} onInput={onInput} />
      ) : (
        <input id={id} type="text" name={props.name} value={props.value} onInput={onInput} />
      )}
    </label>
  );
}

function Choice(props: { label: string; value: string; options: string[]; onChange: (v: string) => void }) {
  return (
    <label>
      {props.label}
      <select value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        {props.options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

function LifecycleFields({ f, set }: { f: Form; set: (k: keyof Form, v: string) => void }) {
  return (
    <>
      <Field
        label="Max sessions"
        name="maxConcurrentSessions"
        type="number"
        value={f.maxConcurrentSessions}
        onInput={(v) => set("maxConcurrentSessions", v)}
      />
      <Field
        label="Ready sessions"
        name="readySessionInstances"
        type="number"
        value={f.readySessionInstances}
        onInput={(v) => set("readySessionInstances", v)}
      />
      <Choice
        label="Lifecycle"
        value={f.lifecycleType}
        options={["Timed", "OnContainerExit"]}
        onChange={(v) => set("lifecycleType", v)}
      />
      {f.lifecycleType === "Timed" ? (
        <Field
          label="Cooldown (seconds)"
          name="cooldownPeriodInSeconds"
          type="number"
          value={f.cooldownPeriodInSeconds}
          onInput={(v) => set("cooldownPeriodInSeconds", v)}
        />
      ) : (
        <Field
          label="Max alive (seconds)"
          name="maxAlivePeriodInSeconds"
          type="number"
          value={f.maxAlivePeriodInSeconds}
          onInput={(v) => set("maxAlivePeriodInSeconds", v)}
        />
      )}
    </>
  );
}

function CreatePool({ api, onDone }: { api: Api; onDone: () => void }) {
  const [f, setF] = useState(EMPTY);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const set = (k: keyof Form, v: string) => setF((old) => ({ ...old, [k]: v }));
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.arm("PUT", api.poolsPath(f.resourceGroup.trim(), f.name.trim()), createBody(f));
      onDone();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel" aria-label="Create a pool" onSubmit={submit}>
      <h2>Create a pool</h2>
      <div class="grid">
        <Field label="Name" name="name" value={f.name} onInput={(v) => set("name", v)} />
        <Field
          label="Resource group"
          name="resourceGroup"
          value={f.resourceGroup}
          onInput={(v) => set("resourceGroup", v)}
        />
        <Choice
          label="Type"
          value={f.containerType}
          options={TYPES}
          onChange={(v) => set("containerType", v)}
        />
        <Choice
          label="Network"
          value={f.network}
          options={["EgressDisabled", "EgressEnabled"]}
          onChange={(v) => set("network", v)}
        />
        <LifecycleFields f={f} set={set} />
        {f.containerType === "CustomContainer" && (
          <>
            <Field label="Image" name="image" value={f.image} onInput={(v) => set("image", v)} />
            <Field
              label="Target port"
              name="targetPort"
              type="number"
              value={f.targetPort}
              onInput={(v) => set("targetPort", v)}
            />
          </>
        )}
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="submit" disabled={busy}>
          Create
        </button>
        <button type="button" class="secondary" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function formOf(p: Pool): Form {
  const lc = p.properties.dynamicPoolConfiguration?.lifecycleConfiguration ?? {};
  return {
    ...EMPTY,
    name: p.name,
    resourceGroup: p.resourceGroup,
    containerType: p.properties.containerType,
    maxConcurrentSessions: String(p.properties.scaleConfiguration.maxConcurrentSessions ?? ""),
    readySessionInstances: String(p.properties.scaleConfiguration.readySessionInstances ?? ""),
    lifecycleType: lc.lifecycleType ?? "Timed",
    cooldownPeriodInSeconds: String(lc.cooldownPeriodInSeconds ?? 300),
    maxAlivePeriodInSeconds: String(lc.maxAlivePeriodInSeconds ?? 3600),
  };
}

function EditPool({ api, pool, onDone }: { api: Api; pool: Pool; onDone: () => void }) {
  const [f, setF] = useState(() => formOf(pool));
  const [error, setError] = useState<string>();
  const set = (k: keyof Form, v: string) => setF((old) => ({ ...old, [k]: v }));
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      await api.arm("PATCH", api.poolsPath(pool.resourceGroup, pool.name), {
        properties: {
          scaleConfiguration: {
            maxConcurrentSessions: num(f.maxConcurrentSessions),
            readySessionInstances: num(f.readySessionInstances),
          },
          dynamicPoolConfiguration: { lifecycleConfiguration: lifecycleOf(f) },
        },
      });
      onDone();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <form class="panel" aria-label={`Edit pool ${pool.name}`} onSubmit={submit}>
      <h2>Edit {pool.name}</h2>
      <div class="grid">
        <LifecycleFields f={f} set={set} />
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="submit">Save</button>
        <button type="button" class="secondary" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function ConfirmDelete({ api, pool, onDone }: { api: Api; pool: Pool; onDone: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [error, setError] = useState<string>();
  const ref = (el: HTMLDialogElement | null) => {
    dialog.current = el;
    if (el && !el.open) el.showModal();
  };
  const confirm = async () => {
    try {
      await api.arm("DELETE", api.poolsPath(pool.resourceGroup, pool.name));
      dialog.current?.close();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <dialog ref={ref} aria-labelledby="delete-title" onClose={onDone}>
      <h2 id="delete-title">Delete pool {pool.name}?</h2>
      <p>Every session of the pool ends and its files are gone. This cannot be undone.</p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="button" class="danger" onClick={confirm}>
          Delete
        </button>
        <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
          Cancel
        </button>
      </div>
    </dialog>
  );
}

export function PoolsView({ api }: { api: Api }) {
  const [pools, setPools] = useState<Pool[]>();
  const [gauges, setGauges] = useState<Map<string, { ready: number; allocated: number }>>(new Map());
  const [error, setError] = useState<string>();
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<Pool>();
  const [deleting, setDeleting] = useState<Pool>();

  usePoll(
    async () => {
      try {
        const [list, metrics] = await Promise.all([api.listPools(), api.metrics().catch(() => undefined)]);
        setPools(list);
        if (metrics !== undefined) setGauges(poolGauges(parseMetrics(metrics)));
        setError(undefined);
      } catch (err) {
        setError(errorText(err));
      }
    },
    2000,
    [api],
  );

  const gauge = (p: Pool) => gauges.get(poolKey(p, api.cred.subscription));
  return (
    <section aria-labelledby="pools-title">
      <div class="title">
        <h1 id="pools-title">Session pools</h1>
        <button type="button" onClick={() => setCreating(true)} disabled={creating}>
          New pool
        </button>
      </div>
      {creating && <CreatePool api={api} onDone={() => setCreating(false)} />}
      {editing && <EditPool api={api} pool={editing} onDone={() => setEditing(undefined)} />}
      {deleting && <ConfirmDelete api={api} pool={deleting} onDone={() => setDeleting(undefined)} />}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {pools === undefined ? (
        <p>Loading…</p>
      ) : pools.length === 0 ? (
        <p>No pools yet: create one with “New pool”.</p>
      ) : (
        <table>
          <caption class="sr-only">Session pools in every resource group</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Resource group</th>
              <th scope="col">Type</th>
              <th scope="col">State</th>
              <th scope="col">Ready</th>
              <th scope="col">Allocated</th>
              <th scope="col">Max</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {pools.map((p) => (
              <tr key={p.id}>
                <th scope="row">{p.name}</th>
                <td>{p.resourceGroup}</td>
                <td>{p.properties.containerType}</td>
                <td>
                  <span class={`state state-${p.properties.provisioningState}`}>
                    {p.properties.provisioningState}
                  </span>
                </td>
                <td>{gauge(p)?.ready ?? "–"}</td>
                <td>{gauge(p)?.allocated ?? "–"}</td>
                <td>{p.properties.scaleConfiguration.maxConcurrentSessions ?? "–"}</td>
                <td class="row-actions">
                  <a
                    href={poolHref("sessions", p.resourceGroup, p.name)}
                    aria-label={`Sessions of ${p.name}`}
                  >
                    Sessions
                  </a>
                  {p.properties.containerType !== "CustomContainer" && (
                    <a
                      href={poolHref("playground", p.resourceGroup, p.name)}
                      aria-label={`Playground of ${p.name}`}
                    >
                      Playground
                    </a>
                  )}
                  <button
                    type="button"
                    class="secondary"
                    aria-label={`Edit ${p.name}`}
                    onClick={() => setEditing(p)}
                  >
                    Edit
                  </button>
                  <button
                    type="button"
                    class="danger"
                    aria-label={`Delete ${p.name}`}
                    onClick={() => setDeleting(p)}
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
