// Sandbox lifecycle events from the engine's event stream, resubscribed with backoff whenever the stream ends,
// plus the newline-delimited JSON reader the event and pull streams share.
import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";
import type { SandboxEvent } from "../../sandbox-driver.ts";
import { labelFilters } from "./container-config.ts";
import type { DockerDriverLogger } from "./docker-driver.ts";

const BACKOFF_START_MS = 100;
const BACKOFF_MAX_MS = 5_000;
/** Event attributes the engine adds next to the container's labels. */
const NON_LABEL_ATTRIBUTES = new Set(["name", "image", "exitCode", "execDuration", "signal"]);
/** How many recent events are remembered to drop the ones a resubscription replays. */
const SEEN_MAX = 256;

interface EngineEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
  timeNano?: number;
}

/**
 * Reads newline-delimited JSON from `stream` until it ends. Lines that are not JSON are skipped (a bad line
 * must not throw out of a stream handler and take the process down). Rejects on stream errors and on abort.
 */
export function readJsonLines(
  stream: NodeJS.ReadableStream,
  onObject: (value: unknown) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffer = "";
    let settled = false;
    const finish = (err?: unknown) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      if (err === undefined) {
        if (buffer.trim() !== "") emit(buffer);
        resolve();
      } else {
        reject(err);
      }
    };
    const emit = (line: string) => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return;
      }
      onObject(value);
    };
    const onAbort = () => {
      finish(signal?.reason);
      (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    stream.on("data", (chunk: Buffer | string) => {
      buffer += chunk.toString();
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line !== "") {
          try {
            emit(line);
          } catch (err) {
            finish(err);
            return;
          }
        }
        newline = buffer.indexOf("\n");
      }
    });
    stream.on("error", (err: unknown) => finish(err));
    stream.on("end", () => finish());
    stream.on("close", () => finish());
  });
}

/**
 * Subscribes to die/destroy/oom of sandboxes carrying `labels`; the returned function unsubscribes.
 * `onResubscribed` runs each time the stream opens again after a failure (a restarted engine replays nothing).
 */
export function watchSandboxEvents(
  docker: Docker,
  labels: Record<string, string>,
  onEvent: (event: SandboxEvent) => void,
  logger: DockerDriverLogger,
  onResubscribed?: () => void,
): () => void {
  const controller = new AbortController();
  const filters: Docker.GetEventsOptions["filters"] = {
    type: ["container"],
    event: ["die", "destroy", "oom"],
    label: labelFilters(labels),
  };
  const seen: string[] = [];
  // Engine time (seconds, fractional) to read from; the engine replays from its buffer. Starting at the call
  // (not at the connection) means nothing is missed between watch() returning and the stream opening.
  let resumeFrom = Date.now() / 1000;

  const deliver = (value: unknown) => {
    const event = value as EngineEvent;
    const id = event.Actor?.ID;
    const action = event.Action;
    if (event.Type !== "container" || !id || (action !== "die" && action !== "destroy" && action !== "oom"))
      return;
    const key = `${id}/${action}/${event.timeNano ?? event.time}`;
    if (seen.includes(key)) return;
    seen.push(key);
    if (seen.length > SEEN_MAX) seen.shift();
    // Seconds as a double hold about a microsecond: resume a microsecond early, and `seen` drops the repeats.
    if (event.timeNano !== undefined) resumeFrom = event.timeNano / 1e9 - 1e-6;
    else if (event.time !== undefined) resumeFrom = event.time - 1e-6;

    const attributes = event.Actor?.Attributes ?? {};
    const eventLabels: Record<string, string> = {};
    for (const [key, value] of Object.entries(attributes)) {
      if (!NON_LABEL_ATTRIBUTES.has(key)) eventLabels[key] = value;
    }
    const sandboxEvent: SandboxEvent = { id, labels: eventLabels, type: action };
    const exitCode = attributes["exitCode"];
    if (action === "die" && exitCode !== undefined && /^-?\d+$/.test(exitCode))
      sandboxEvent.exitCode = Number(exitCode);
    try {
      onEvent(sandboxEvent);
    } catch (err) {
      logger.error({ err, sandboxId: id, event: action }, "sandbox event handler threw");
    }
  };

  const loop = async () => {
    let backoffMs = BACKOFF_START_MS;
    let failures = 0;
    let opened = false;
    while (!controller.signal.aborted) {
      try {
        // abortSignal is not in @types/dockerode's options; dockerode passes it through to the request.
        const options = { filters, since: resumeFrom, abortSignal: controller.signal };
        const stream = await docker.getEvents(options);
        if (failures > 0) logger.info({ failures }, "docker event stream reconnected");
        // Any stream after the first: whatever happened in between may not be replayed.
        if (opened) {
          try {
            onResubscribed?.();
          } catch (err) {
            logger.error({ err }, "event stream resubscription handler threw");
          }
        }
        opened = true;
        backoffMs = BACKOFF_START_MS;
        failures = 0;
        await readJsonLines(stream, deliver, controller.signal);
        if (!controller.signal.aborted) logger.debug({}, "docker event stream ended; resubscribing");
      } catch (err) {
        if (controller.signal.aborted) return;
        failures += 1;
        const log = failures === 1 ? logger.warn : logger.debug;
        log.call(
          logger,
          { err, failures, retryInMs: backoffMs },
          "docker event stream failed; resubscribing",
        );
      }
      try {
        await sleep(backoffMs, undefined, { signal: controller.signal });
      } catch {
        return;
      }
      backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
    }
  };
  void loop();
  return () => controller.abort();
}
