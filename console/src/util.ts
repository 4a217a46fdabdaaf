// Small helpers the views share: polling, dates, sizes, error text.
import { useEffect, useRef } from "preact/hooks";
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
