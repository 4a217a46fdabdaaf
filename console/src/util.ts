// Small helpers the views share: polling, failures kept to show, dates, sizes, error text.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api.ts";

/** Calls `tick` now and then every `everyMs` while the component is shown (never two at once). */
export function usePoll(tick: () => Promise<void>, everyMs: number, deps: unknown[]): void {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        await latest.current();
      } finally {
        if (!stopped) timer = setTimeout(run, everyMs);
      }
    };
    void run();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, deps);
}

/** The last failure's text (for an ErrorBanner), and `attempt`: runs an action, keeping its failure. */
export function useFailure() {
  const [error, setError] = useState<string>();
  /** Runs `action`; resolves either way, a failure leaving its text in `error`. */
  const attempt = async (action: () => Promise<unknown>): Promise<void> => {
    try {
      await action();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return { error, setError, attempt };
}

/** `usePoll` of `load`, whose failure is kept to show until a later load succeeds; `refresh` loads now. */
export function usePolled(load: () => Promise<void>, everyMs: number, deps: unknown[]) {
  const failure = useFailure();
  const refresh = () =>
    failure.attempt(async () => {
      await load();
      failure.setError(undefined);
    });
  usePoll(refresh, everyMs, deps);
  return { ...failure, refresh };
}

/** A form's submit handler: busy while `action` runs, the previous error cleared, a failure kept to show. */
export function useSubmit(action: () => Promise<void>) {
  const { error, setError, attempt } = useFailure();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    await attempt(action);
    setBusy(false);
  };
  return { error, busy, submit };
}

export function formatTime(iso: string | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** What to show for a failure: the API's own message (and ARM's details), else the error's text. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    const head = `${err.code}: ${err.message}`;
    return err.details.length > 0 ? `${head} ${err.details.join(" ")}` : head;
  }
  return err instanceof Error ? err.message : String(err);
}

export function poolHref(view: "sessions" | "playground", rg: string, name: string): string {
  return `#/pools/${encodeURIComponent(rg)}/${encodeURIComponent(name)}/${view}`;
}
