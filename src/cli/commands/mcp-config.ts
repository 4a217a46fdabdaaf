// `sessionpool mcp-config`: a ready-to-paste MCP client configuration for a pool's MCP server (its endpoint and
// API key, or a data-plane token when the pool disabled keys), in the shape VS Code, Claude or a plain JSON
// consumer reads, so a user goes from a pool to an agent in one command.
import type { CliContext } from "../context.ts";
import type { CommandResult } from "../output.ts";
import { poolPath, poolTarget, type RefFlags } from "../pool-ref.ts";

export const MCP_CLIENTS = ["json", "vscode", "claude"] as const;
export type McpClient = (typeof MCP_CLIENTS)[number];

interface McpSettings {
  isMcpServerEnabled?: boolean;
  isMcpServerApiKeyDisabled?: boolean;
  mcpServerEndpoint?: string;
}

export async function mcpConfig(
  ctx: CliContext,
  f: RefFlags & { client?: McpClient },
): Promise<CommandResult> {
  const ref = poolTarget(ctx, f);
  const client = ctx.client();
  const pool = (await client.json("GET", poolPath(ref))) as {
    properties?: { mcpServerSettings?: McpSettings };
  };
  const settings = pool.properties?.mcpServerSettings ?? {};
  let headers: Record<string, string>;
  if (settings.isMcpServerEnabled === true && settings.isMcpServerApiKeyDisabled === true) {
    // Keys are off: the pool's data-plane token stands in, and it expires (getAuthtoken's lifetime).
    const issued = (await client.json("POST", poolPath(ref, "/getAuthtoken"))) as {
      properties?: { token?: string };
    };
    headers = { Authorization: `Bearer ${issued.properties?.token ?? ""}` };
  } else {
    // On a pool without MCP the server answers 400 McpServerNotEnabled, which says how to enable it.
    const credential = (await client.json("POST", poolPath(ref, "/fetchMcpServerCredentials"))) as {
      apiKey?: string;
    };
    headers = { "x-ms-apikey": credential.apiKey ?? "" };
  }
  const url = settings.mcpServerEndpoint ?? "";
  const server = { type: "http", url, headers };
  const value =
    f.client === "vscode"
      ? { servers: { [ref.name]: server } }
      : f.client === "claude"
        ? { mcpServers: { [ref.name]: server } }
        : { name: ref.name, endpoint: url, headers };
  return { value, raw: `${JSON.stringify(value, null, 2)}\n` };
}
