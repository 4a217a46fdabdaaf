// The console's one way to the server: the public API with the signed-in admin token (the management API), and
// for a pool's data plane a token from that pool's getAuthtoken, as the README's curl quick start does. The
// console can do nothing the API would not let the same credential do.

export const ARM_API = "2025-10-02-preview";
export const DATA_PLANE_API = "2025-10-02-preview";
export const DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000";

const STORAGE_KEY = "sessionpool.console.credential";

export interface Credential {
  token: string;
  subscription: string;
}

/** The credential of this browser tab (sessionStorage), else the one remembered on this device (localStorage). */
export function loadCredential(): Credential | undefined {
  const text = sessionStorage.getItem(STORAGE_KEY) ?? localStorage.getItem(STORAGE_KEY);
  if (text === null) return undefined;
  try {
    const c = JSON.parse(text) as Partial<Credential>;
    return typeof c.token === "string" && typeof c.subscription === "string"
      ? { token: c.token, subscription: c.subscription }
      : undefined;
  } catch {
    return undefined;
  }
}

export function saveCredential(c: Credential, remember: boolean): void {
  const text = JSON.stringify(c);
  sessionStorage.setItem(STORAGE_KEY, text);
  if (remember) localStorage.setItem(STORAGE_KEY, text);
  else localStorage.removeItem(STORAGE_KEY);
}

export function forgetCredential(): void {
  sessionStorage.removeItem(STORAGE_KEY);
  localStorage.removeItem(STORAGE_KEY);
}

/** An answer the API refused, with its error envelope's code and message (ARM's details included). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: string[];
  constructor(status: number, code: string, message: string, details: string[] = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export interface Pool {
  id: string;
  name: string;
  location: string;
  resourceGroup: string;
  properties: {
    containerType: string;
    provisioningState: string;
    poolManagementEndpoint: string;
    scaleConfiguration: { maxConcurrentSessions?: number; readySessionInstances?: number };
    dynamicPoolConfiguration?: {
      lifecycleConfiguration?: {
        lifecycleType?: string;
        cooldownPeriodInSeconds?: number;
        maxAlivePeriodInSeconds?: number;
      };
    };
    sessionNetworkConfiguration?: { status?: string };
  };
}

export interface SessionInfo {
  identifier: string;
  createdAt: string;
  lastAccessedAt: string;
  expireAt?: string;
}

export interface FileInfo {
  name: string;
  type: string;
  sizeInBytes: number;
  lastModifiedAt: string;
  directory: string;
}

/** The same URL on this page's origin: the API hands out URLs built from the server's public URL. */
export function onThisOrigin(url: string): string {
  const u = new URL(url, location.origin);
  return `${location.origin}${u.pathname}${u.search}`;
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as {
      error?: { code?: string; message?: string; details?: { message?: string }[] };
    };
    if (body.error?.message) {
      const details = (body.error.details ?? []).map((d) => d.message ?? "").filter((m) => m !== "");
      return new ApiError(res.status, body.error.code ?? String(res.status), body.error.message, details);
    }
  } catch {
    // not JSON: the text is the message
  }
  return new ApiError(res.status, String(res.status), text || `${res.status} ${res.statusText}`);
}

export function poolKey(p: { resourceGroup: string; name: string }, subscription: string): string {
  return `${subscription}/${p.resourceGroup}/${p.name}`.toLowerCase();
}

export class Api {
  readonly cred: Credential;
  readonly #poolTokens = new Map<string, { token: string; expiresMs: number }>();

  constructor(cred: Credential) {
    this.cred = cred;
  }

  #auth(token = this.cred.token): Record<string, string> {
    return { authorization: `Bearer ${token}` };
  }

  poolsPath(resourceGroup?: string, name?: string): string {
    const base = `/subscriptions/${encodeURIComponent(this.cred.subscription)}`;
    if (resourceGroup === undefined) return `${base}/providers/Microsoft.App/sessionPools`;
    const rg = `${base}/resourceGroups/${encodeURIComponent(resourceGroup)}/providers/Microsoft.App/sessionPools`;
    return name === undefined ? rg : `${rg}/${encodeURIComponent(name)}`;
  }

  /** A management API call; JSON in and out, an ApiError for anything but 2xx. */
  async arm(method: string, path: string, body?: unknown): Promise<unknown> {
    const url = path.startsWith("http")
      ? onThisOrigin(path)
      : `${path}${path.includes("?") ? "&" : "?"}api-version=${ARM_API}`;
    const res = await fetch(url, {
      method,
      headers: { ...this.#auth(), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw await errorOf(res);
    const text = await res.text();
    return text === "" ? undefined : JSON.parse(text);
  }

  /** Every pool of the subscription, all resource groups, following nextLink. */
  async listPools(): Promise<Pool[]> {
    const pools: Pool[] = [];
    let next: string | undefined = this.poolsPath();
    while (next !== undefined) {
      const page = (await this.arm("GET", next)) as {
        value: Omit<Pool, "resourceGroup">[];
        nextLink?: string;
      };
      for (const p of page.value) pools.push(withGroup(p));
      next = page.nextLink;
    }
    return pools.sort(byName);
  }

  async getPool(resourceGroup: string, name: string): Promise<Pool> {
    return withGroup(
      (await this.arm("GET", this.poolsPath(resourceGroup, name))) as Omit<Pool, "resourceGroup">,
    );
  }

  /** A data-plane token for the pool (getAuthtoken), reused until a minute before it expires. */
  async poolToken(pool: Pool): Promise<string> {
    const cached = this.#poolTokens.get(pool.id);
    if (cached && cached.expiresMs - 60_000 > Date.now()) return cached.token;
    const answer = (await this.arm(
      "POST",
      `${this.poolsPath(pool.resourceGroup, pool.name)}/getAuthtoken`,
    )) as {
      properties: { token: string; expires: string };
    };
    const token = answer.properties.token;
    this.#poolTokens.set(pool.id, { token, expiresMs: Date.parse(answer.properties.expires) });
    return token;
  }

  /** A request to the pool's data plane with its pool token; `path` is under the pool management endpoint. */
  async dataPlane(
    pool: Pool,
    method: string,
    path: string,
    query: Record<string, string>,
    init: { body?: BodyInit; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const url = new URL(onThisOrigin(`${pool.properties.poolManagementEndpoint}${path}`));
    url.searchParams.set("api-version", DATA_PLANE_API);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const res = await fetch(url, {
      method,
      headers: { ...this.#auth(await this.poolToken(pool)), ...init.headers },
      ...(init.body === undefined ? {} : { body: init.body }),
    });
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  async listSessions(pool: Pool): Promise<SessionInfo[]> {
    const res = await this.dataPlane(pool, "GET", "/listSessions", {});
    return ((await res.json()) as { sessions: SessionInfo[] }).sessions;
  }

  async listFiles(pool: Pool, identifier: string): Promise<FileInfo[]> {
    const res = await this.dataPlane(pool, "GET", "/files", { identifier });
    return ((await res.json()) as { value: FileInfo[] }).value;
  }

  /** /healthz (no credential needed), or undefined when the server runs without an engine. */
  async health(): Promise<Record<string, unknown> | undefined> {
    const res = await fetch("/healthz");
    if (res.status === 404) return undefined;
    if (!res.ok) throw await errorOf(res);
    return (await res.json()) as Record<string, unknown>;
  }

  /** /metrics (admin credential), or undefined when the server runs without an engine. */
  async metrics(): Promise<string | undefined> {
    const res = await fetch("/metrics", { headers: this.#auth() });
    if (res.status === 404) return undefined;
    if (!res.ok) throw await errorOf(res);
    return res.text();
  }
}

/** The order pools are listed in: by name, then resource group. */
export function byName(a: Pool, b: Pool): number {
  return a.name.localeCompare(b.name) || a.resourceGroup.localeCompare(b.resourceGroup);
}

/** A pool as the API answers it, with the resource group its id names. */
export function withGroup(p: Omit<Pool, "resourceGroup">): Pool {
  const m = /\/resourceGroups\/([^/]+)\//i.exec(p.id);
  return { ...p, resourceGroup: m ? decodeURIComponent(m[1]!) : "" };
}

export interface ServerEvent {
  event: string;
  data: string;
}

/** The server-sent events of a streamed answer (docs/streaming.md), as they arrive; comments left out. */
export async function* serverEvents(res: Response): AsyncGenerator<ServerEvent> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
      if (data.length > 0) yield { event, data: data.join("\n") };
    }
  }
}
