// The pieces every view is built from: a view's frame, labelled fields, the error banner, tables with a row
// of actions per item. One place for the markup the browser test and screen readers find controls by.
import type { ComponentChildren, InputHTMLAttributes } from "preact";
import { useId } from "preact/hooks";
import type { Api } from "./api.ts";

/** What a view of one pool is given (its route names the pool). */
export interface PoolViewProps {
  api: Api;
  resourceGroup: string;
  name: string;
}

/** A view: a section named by its heading, with links or buttons beside the heading. */
export function View(props: {
  id: string;
  title: ComponentChildren;
  bar?: ComponentChildren;
  children: ComponentChildren;
}) {
  const titleId = `${props.id}-title`;
  return (
    <section aria-labelledby={titleId}>
      <div class="title">
        <h1 id={titleId}>{props.title}</h1>
        {props.bar}
      </div>
      {props.children}
    </section>
  );
}

/** What failed, announced to screen readers; nothing while there is no error. */
export function ErrorBanner({ error }: { error: string | undefined }) {
  return error ? (
    <p role="alert" class="error">
      {error}
    </p>
  ) : null;
}

/** A labelled input; the label is its accessible name. */
export function Field(props: {
  label: string;
  name: string;
  value: string;
  onInput: (v: string) => void;
  type?: "text" | "number" | "password";
  required?: boolean;
  autocomplete?: string;
  list?: string;
}) {
  const id = useId();
  return (
    <label for={id}>
      {props.label}
      <input
        id={id}
        {...kindOf(props.type, props.list)}
        name={props.name}
        autocomplete={props.autocomplete}
        required={props.required}
        value={props.value}
        onInput={(e) => props.onInput(e.currentTarget.value)}
      />
    </label>
  );
}

/** A labelled select of plain strings. */
export function Choice(props: {
  label: string;
  name?: string;
  value: string;
  options: string[];
  onInput: (v: string) => void;
}) {
  return (
    <label>
      {props.label}
      <select name={props.name} value={props.value} onChange={(e) => props.onInput(e.currentTarget.value)}>
        {props.options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

/** One row of an ItemTable: its header cell (what names the row), the other cells, its action buttons. */
export interface ItemRow {
  key: string;
  header: string;
  cells: ComponentChildren[];
  actions: ComponentChildren;
}

/**
 * The list of a view: a note while loading, another when empty, else a table whose first column names each
 * row and whose last holds its actions; the caption names the table for screen readers only.
 */
export function ItemTable<T>(props: {
  items: T[] | undefined;
  loading: ComponentChildren;
  empty: ComponentChildren;
  caption: string;
  columns: string[];
  row: (item: T) => ItemRow;
}) {
  if (props.items === undefined) return <>{props.loading}</>;
  if (props.items.length === 0) return <>{props.empty}</>;
  return (
    <table>
      <caption class="sr-only">{props.caption}</caption>
      <thead>
        <tr>
          {props.columns.map((c) => (
            <th key={c} scope="col">
              {c}
            </th>
          ))}
          <th scope="col">
            <span class="sr-only">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {props.items.map(props.row).map((r) => (
          <tr key={r.key}>
            <th scope="row">{r.header}</th>
            {r.cells.map((c, i) => (
              <td key={i}>{c}</td>
            ))}
            <td class="row-actions">{r.actions}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A button acting on one row: `label` names the row's item ("Delete pool1"), the text only what it does. */
export function RowButton(props: {
  kind: "secondary" | "danger";
  label: string;
  onClick: () => void;
  children: ComponentChildren;
}) {
  return (
    <button type="button" class={props.kind} aria-label={props.label} onClick={props.onClick}>
      {props.children}
    </button>
  );
}

// Preact types `type` (and `list`, which only text-like inputs take) per kind of input, not as a union.
function kindOf(
  type: "text" | "number" | "password" | undefined,
  list: string | undefined,
): InputHTMLAttributes {
  if (type === "number") return { type: "number" };
  if (type === "password") return { type: "password" };
  return { type: "text", list };
}
