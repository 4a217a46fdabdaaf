// Health checks for custom containers: the target port accepting connections, and the pool's Startup and
// Liveness probes (httpGet or tcpSocket), run from the server to the container's address.
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import type { Probe } from "../pools/pool-doc.ts";

/** HTTPS probes skip certificate verification, as Kubernetes' do: containers mostly serve self-signed certificates. */
const httpsProbes = new Agent({ connect: { rejectUnauthorized: false } });

/** One TCP connection attempt; true when the port accepted it within `timeoutMs`. */
export function tcpOpen(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.removeAllListeners();
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Waits until `host:port` accepts connections; false when `deadlineMs` passes or `stillRunning` says no. */
export async function waitForPort(
  host: string,
  port: number,
  options: { deadlineMs: number; signal?: AbortSignal; stillRunning?: () => Promise<boolean> },
): Promise<boolean> {
  const end = performance.now() + options.deadlineMs;
  let delay = 10;
  for (let attempt = 0; performance.now() < end; attempt++) {
    options.signal?.throwIfAborted();
    if (await tcpOpen(host, port, 1000)) return true;
    if (attempt % 10 === 9 && options.stillRunning && !(await options.stillRunning())) return false;
    await sleep(delay, undefined, options.signal ? { signal: options.signal } : {});
    delay = Math.min(delay * 2, 250);
  }
  return false;
}

/** Runs a probe once. */
export async function probeOnce(probe: Probe, address: string, signal?: AbortSignal): Promise<boolean> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.tcpSocket) return tcpOpen(address, probe.tcpSocket.port, timeoutMs);
  const get = probe.httpGet;
  if (!get) return false;
  const scheme = (get.scheme ?? "HTTP").toLowerCase();
  const path = get.path?.startsWith("/") ? get.path : `/${get.path ?? ""}`;
  // Probes only ever go to the container: `host` becomes its Host header, which httpHeaders may still set.
  const headers: Record<string, string> = get.host ? { host: get.host } : {};
  for (const h of get.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
  try {
    const res = await request(`${scheme}://${address}:${get.port}${path}`, {
      method: "GET",
      headers,
      signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])]),
      ...(scheme === "https" ? { dispatcher: httpsProbes } : {}),
    });
    await res.body.dump();
    return res.statusCode >= 200 && res.statusCode < 400;
  } catch {
    return false;
  }
}

/** A Startup probe: passes once within failureThreshold attempts, periodSeconds apart, after initialDelaySeconds. */
export async function startupPasses(probe: Probe, address: string, signal?: AbortSignal): Promise<boolean> {
  const opts = signal ? { signal } : {};
  if (probe.initialDelaySeconds) await sleep(probe.initialDelaySeconds * 1000, undefined, opts);
  const attempts = probe.failureThreshold ?? 3;
  for (let i = 0; i < attempts; i++) {
    if (await probeOnce(probe, address, signal)) return true;
    if (i < attempts - 1) await sleep((probe.periodSeconds ?? 10) * 1000, undefined, opts);
  }
  return false;
}
