// Pools: the list across every resource group (state, ready/allocated from /metrics, max), create, edit scale
// and lifecycle, delete with confirmation. Refreshed every 2 s, so provisioning states change as they happen.
import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";
import { type Api, byName, type Pool, poolKey, withGroup } from "./api.ts";
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

/** The lifecycles a pool of `containerType` may have: OnContainerExit is for custom containers only (the API's rule). */
function lifecycleTypes(containerType: string): string[] {
  return containerType === "CustomContainer" ? ["Timed", "OnContainerExit"] : ["Timed"];
}

/** The lifecycle the form stands for: what was chosen, unless the type (changed since) does not allow it. */
function lifecycleTypeOf(f: Form): string {
  return lifecycleTypes(f.containerType).includes(f.lifecycleType) ? f.lifecycleType : "Timed";
}

function lifecycleOf(f: Form): Record<string, unknown> {
  return lifecycleTypeOf(f) === "OnContainerExit"
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
      <Choice
        label="Lifecycle"
        options={lifecycleTypes(f.containerType)}
        {...bind("lifecycleType")}
        value={lifecycleTypeOf(f)}
      />
      {lifecycleTypeOf(f) === "Timed" ? (
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

/** What a form calls when it is done: with the API's answer when it wrote the pool, without when cancelled. */
type OnDone = (answer?: Pool) => void;

/** The pool the API answered a PUT or PATCH with (its state InProgress until provisioning settles). */
function answered(body: unknown): Pool {
  return withGroup(body as Omit<Pool, "resourceGroup">);
}

function CreatePool({ api, onDone }: { api: Api; onDone: OnDone }) {
  const [f, bind] = useForm(() => EMPTY);
  const { error, busy, submit } = useSubmit(async () => {
    onDone(
      answered(await api.arm("PUT", api.poolsPath(f.resourceGroup.trim(), f.name.trim()), createBody(f))),
    );
  });
  return (
    <PoolForm
      label="Create a pool"
      title="Create a pool"
      submitLabel="Create"
      busy={busy}
      error={error}
      onSubmit={submit}
      onCancel={() => onDone()}
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

function EditPool({ api, pool, onDone }: { api: Api; pool: Pool; onDone: OnDone }) {
  const [f, bind] = useForm(() => formOf(pool));
  const { error, busy, submit } = useSubmit(async () => {
    const answer = await api.arm("PATCH", api.poolsPath(pool.resourceGroup, pool.name), {
      properties: scaleAndLifecycleOf(f),
    });
    onDone(answered(answer));
  });
  return (
    <PoolForm
      label={`Edit pool ${pool.name}`}
      title={`Edit ${pool.name}`}
      submitLabel="Save"
      busy={busy}
      error={error}
      onSubmit={submit}
      onCancel={() => onDone()}
    >
      <LifecycleFields f={f} bind={bind} />
    </PoolForm>
  );
}

/** Asks before deleting: Cancel (or Escape) closes the dialog and nothing is sent; Delete sends the DELETE. */
function ConfirmDelete(props: { api: Api; pool: Pool; onDeleted: () => void; onDone: () => void }) {
  const { api, pool, onDone } = props;
  const dialog = useRef<HTMLDialogElement>(null);
  const { error, attempt } = useFailure();
  const [busy, setBusy] = useState(false);
  const ref = (el: HTMLDialogElement | null) => {
    dialog.current = el;
    if (el && !el.open) el.showModal();
  };
  const confirm = async () => {
    setBusy(true);
    await attempt(async () => {
      await api.arm("DELETE", api.poolsPath(pool.resourceGroup, pool.name));
      props.onDeleted();
      dialog.current?.close();
    });
    setBusy(false);
  };
  return (
    <dialog ref={ref} aria-labelledby="delete-title" onClose={onDone}>
      <h2 id="delete-title">Delete pool {pool.name}?</h2>
      <p>Every session of the pool ends and its files are gone. This cannot be undone.</p>
      <ErrorBanner error={error} />
      <div class="actions">
        <button type="button" class="danger" onClick={confirm} disabled={busy}>
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

  // Counts the console's own writes: a list asked for before the latest one is out of date and is dropped.
  const writes = useRef(0);

  const { error, refresh } = usePolled(
    async () => {
      const asked = writes.current;
      const [list, metrics] = await Promise.all([api.listPools(), api.metrics().catch(() => undefined)]);
      if (asked === writes.current) setPools(list);
      if (metrics !== undefined) setGauges(poolGauges(parseMetrics(metrics)));
    },
    2000,
    [api],
  );

  /**
   * After a write: the pool as the API answered it is shown at once (a new or changed pool is InProgress until
   * it is provisioned), then the list is read again, so the state is live from the first moment.
   */
  const wrote = (answer?: Pool) => {
    writes.current++;
    if (answer !== undefined) {
      setPools((old) =>
        [...(old ?? []).filter((p) => p.id.toLowerCase() !== answer.id.toLowerCase()), answer].sort(byName),
      );
    }
    void refresh();
  };
  const created: OnDone = (answer) => {
    setCreating(false);
    if (answer !== undefined) wrote(answer);
  };
  const edited: OnDone = (answer) => {
    setEditing(undefined);
    if (answer !== undefined) wrote(answer);
  };

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
      {creating && <CreatePool api={api} onDone={created} />}
      {/* Keyed by the pool: editing another pool starts from that pool's values, not the form's. */}
      {editing && <EditPool key={editing.id} api={api} pool={editing} onDone={edited} />}
      {deleting && (
        <ConfirmDelete
          key={deleting.id}
          api={api}
          pool={deleting}
          onDeleted={() => wrote()}
          onDone={() => setDeleting(undefined)}
        />
      )}
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
