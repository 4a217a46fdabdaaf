// Pools: the list across every resource group (state, ready/allocated from /metrics, max), create, edit scale
// and lifecycle, delete with confirmation. Refreshed every 2 s, so provisioning states change as they happen.
import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";
import { type Api, type Pool, poolKey } from "./api.ts";
import { parseMetrics, poolGauges } from "./metrics.ts";
import { Choice, ErrorBanner, Field, ItemTable, RowButton, View } from "./ui.tsx";
import { poolHref, useFailure, usePolled, useSubmit } from "./util.ts";

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

/** The properties both creating and editing a pool send: scale and lifecycle. */
function scaleAndLifecycleOf(f: Form): Record<string, unknown> {
  return {
    scaleConfiguration: {
      maxConcurrentSessions: num(f.maxConcurrentSessions),
      readySessionInstances: num(f.readySessionInstances),
    },
    dynamicPoolConfiguration: { lifecycleConfiguration: lifecycleOf(f) },
  };
}

function createBody(f: Form): Record<string, unknown> {
  return {
    location: "local",
    properties: {
      containerType: f.containerType,
      poolManagementType: "Dynamic",
      ...scaleAndLifecycleOf(f),
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

/** What binds a field to one key of the form: its name, its value as typed and the setter. */
type Bind = (k: keyof Form) => { name: string; value: string; onInput: (v: string) => void };

/** The form's fields as typed, and what binds a field to one of them. */
function useForm(initial: () => Form): [Form, Bind] {
  const [f, setF] = useState(initial);
  return [f, (k) => ({ name: k, value: f[k], onInput: (v) => setF((old) => ({ ...old, [k]: v })) })];
}

function LifecycleFields({ f, bind }: { f: Form; bind: Bind }) {
  return (
    <>
      <Field label="Max sessions" type="number" {...bind("maxConcurrentSessions")} />
      <Field label="Ready sessions" type="number" {...bind("readySessionInstances")} />
      <Choice label="Lifecycle" options={["Timed", "OnContainerExit"]} {...bind("lifecycleType")} />
      {f.lifecycleType === "Timed" ? (
        <Field label="Cooldown (seconds)" type="number" {...bind("cooldownPeriodInSeconds")} />
      ) : (
        <Field label="Max alive (seconds)" type="number" {...bind("maxAlivePeriodInSeconds")} />
      )}
    </>
  );
}

/** A pool's create or edit form: its fields in a grid, the API's refusal, submit and Cancel. */
function PoolForm(props: {
  label: string;
  title: string;
  submitLabel: string;
  busy?: boolean;
  error: string | undefined;
  onSubmit: (e: Event) => void;
  onCancel: () => void;
  children: ComponentChildren;
}) {
  return (
    <form class="panel" aria-label={props.label} onSubmit={props.onSubmit}>
      <h2>{props.title}</h2>
      <div class="grid">{props.children}</div>
      <ErrorBanner error={props.error} />
      <div class="actions">
        <button type="submit" disabled={props.busy}>
          {props.submitLabel}
        </button>
        <button type="button" class="secondary" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function CreatePool({ api, onDone }: { api: Api; onDone: () => void }) {
  const [f, bind] = useForm(() => EMPTY);
  const { error, busy, submit } = useSubmit(async () => {
    await api.arm("PUT", api.poolsPath(f.resourceGroup.trim(), f.name.trim()), createBody(f));
    onDone();
  });
  return (
    <PoolForm
      label="Create a pool"
      title="Create a pool"
      submitLabel="Create"
      busy={busy}
      error={error}
      onSubmit={submit}
      onCancel={onDone}
    >
      <Field label="Name" {...bind("name")} />
      <Field label="Resource group" {...bind("resourceGroup")} />
      <Choice label="Type" options={TYPES} {...bind("containerType")} />
      <Choice label="Network" options={["EgressDisabled", "EgressEnabled"]} {...bind("network")} />
      <LifecycleFields f={f} bind={bind} />
      {f.containerType === "CustomContainer" && (
        <>
          <Field label="Image" {...bind("image")} />
          <Field label="Target port" type="number" {...bind("targetPort")} />
        </>
      )}
    </PoolForm>
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
  const [f, bind] = useForm(() => formOf(pool));
  // No busy state: Save stays enabled while saving, as it always has.
  const { error, submit } = useSubmit(async () => {
    await api.arm("PATCH", api.poolsPath(pool.resourceGroup, pool.name), {
      properties: scaleAndLifecycleOf(f),
    });
    onDone();
  });
  return (
    <PoolForm
      label={`Edit pool ${pool.name}`}
      title={`Edit ${pool.name}`}
      submitLabel="Save"
      error={error}
      onSubmit={submit}
      onCancel={onDone}
    >
      <LifecycleFields f={f} bind={bind} />
    </PoolForm>
  );
}

function ConfirmDelete({ api, pool, onDone }: { api: Api; pool: Pool; onDone: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const { error, attempt } = useFailure();
  const ref = (el: HTMLDialogElement | null) => {
    dialog.current = el;
    if (el && !el.open) el.showModal();
  };
  const confirm = () =>
    attempt(async () => {
      await api.arm("DELETE", api.poolsPath(pool.resourceGroup, pool.name));
      dialog.current?.close();
    });
  return (
    <dialog ref={ref} aria-labelledby="delete-title" onClose={onDone}>
      <h2 id="delete-title">Delete pool {pool.name}?</h2>
      <p>Every session of the pool ends and its files are gone. This cannot be undone.</p>
      <ErrorBanner error={error} />
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
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<Pool>();
  const [deleting, setDeleting] = useState<Pool>();

  const { error } = usePolled(
    async () => {
      const [list, metrics] = await Promise.all([api.listPools(), api.metrics().catch(() => undefined)]);
      setPools(list);
      if (metrics !== undefined) setGauges(poolGauges(parseMetrics(metrics)));
    },
    2000,
    [api],
  );

  const gauge = (p: Pool) => gauges.get(poolKey(p, api.cred.subscription));
  return (
    <View
      id="pools"
      title="Session pools"
      bar={
        <button type="button" onClick={() => setCreating(true)} disabled={creating}>
          New pool
        </button>
      }
    >
      {creating && <CreatePool api={api} onDone={() => setCreating(false)} />}
      {editing && <EditPool api={api} pool={editing} onDone={() => setEditing(undefined)} />}
      {deleting && <ConfirmDelete api={api} pool={deleting} onDone={() => setDeleting(undefined)} />}
      <ErrorBanner error={error} />
      <ItemTable
        items={pools}
        loading={<p>Loading…</p>}
        empty={<p>No pools yet: create one with “New pool”.</p>}
        caption="Session pools in every resource group"
        columns={["Name", "Resource group", "Type", "State", "Ready", "Allocated", "Max"]}
        row={(p) => ({
          key: p.id,
          header: p.name,
          cells: [
            p.resourceGroup,
            p.properties.containerType,
            <span class={`state state-${p.properties.provisioningState}`}>
              {p.properties.provisioningState}
            </span>,
            gauge(p)?.ready ?? "–",
            gauge(p)?.allocated ?? "–",
            p.properties.scaleConfiguration.maxConcurrentSessions ?? "–",
          ],
          actions: (
            <>
              <a href={poolHref("sessions", p.resourceGroup, p.name)} aria-label={`Sessions of ${p.name}`}>
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
              <RowButton kind="secondary" label={`Edit ${p.name}`} onClick={() => setEditing(p)}>
                Edit
              </RowButton>
              <RowButton kind="danger" label={`Delete ${p.name}`} onClick={() => setDeleting(p)}>
                Delete
              </RowButton>
            </>
          ),
        })}
      />
    </View>
  );
}
