// Every label sessionpool puts on what it creates in the engine. Boot-time adoption and orphan removal find
// sandboxes by these labels, never by name; core decides the values, drivers pass them through untouched.

export const LABEL_PREFIX = "io.sessionpool.";

/** Always "true" on anything sessionpool created; drivers only ever list and watch what carries it. */
export const LABEL_MANAGED = `${LABEL_PREFIX}managed`;
/** The pool a sandbox belongs to. */
export const LABEL_POOL = `${LABEL_PREFIX}pool`;
/** The sandbox's own id within sessionpool (not the engine's container id). */
export const LABEL_SESSION = `${LABEL_PREFIX}session`;
/** The server instance that created the sandbox. */
export const LABEL_INSTANCE = `${LABEL_PREFIX}instance`;
/** Hash of the template (image + settings) the sandbox was built from; a change rolls the pool. */
export const LABEL_TEMPLATE_HASH = `${LABEL_PREFIX}template-hash`;
/** The sandbox runtime (OCI runtime) the sandbox runs under ("runsc" is gVisor, "runc" the engine's default). */
export const LABEL_RUNTIME = `${LABEL_PREFIX}runtime`;
/** What the object is, e.g. "sandbox" or "network". */
export const LABEL_KIND = `${LABEL_PREFIX}kind`;

export const MANAGED_VALUE = "true";

export interface LabelValues {
  pool?: string;
  session?: string;
  instance?: string;
  templateHash?: string;
  kind?: string;
  runtime?: string;
}

/** The label set for one object: always `managed=true`, plus every value given (absent ones are left out). */
export function buildLabels(values: LabelValues = {}): Record<string, string> {
  const labels: Record<string, string> = { [LABEL_MANAGED]: MANAGED_VALUE };
  if (values.pool !== undefined) labels[LABEL_POOL] = values.pool;
  if (values.session !== undefined) labels[LABEL_SESSION] = values.session;
  if (values.instance !== undefined) labels[LABEL_INSTANCE] = values.instance;
  if (values.templateHash !== undefined) labels[LABEL_TEMPLATE_HASH] = values.templateHash;
  if (values.kind !== undefined) labels[LABEL_KIND] = values.kind;
  if (values.runtime !== undefined) labels[LABEL_RUNTIME] = values.runtime;
  return labels;
}
