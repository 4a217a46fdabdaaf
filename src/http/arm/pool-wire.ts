// Renders a stored pool as the caller's api-version speaks it: legacy dynamicPoolConfiguration and
// registryServer for the early previews, probes and MCP settings only where the version defines them.
import { ARM_API_VERSIONS } from "../../core/pools/api-versions.ts";
import { poolDocOf, poolResourceId } from "../../core/pools/pool-doc.ts";
import type { StoredPool } from "../../store/store.ts";

export function poolEndpoint(
  publicUrl: string,
  pool: { subscriptionId: string; resourceGroup: string; name: string },
): string {
  return `${publicUrl}/subscriptions/${pool.subscriptionId}/resourceGroups/${pool.resourceGroup}/sessionPools/${pool.name}`;
}

export function poolToWire(pool: StoredPool, apiVersion: string, publicUrl: string): Record<string, unknown> {
  const f = ARM_API_VERSIONS[apiVersion] ?? ARM_API_VERSIONS["2025-07-01"]!;
  const doc = poolDocOf(pool);
  const p = doc.properties;
  const lc = p.dynamicPoolConfiguration.lifecycleConfiguration;
  const endpoint = poolEndpoint(publicUrl, pool);

  const template = p.customContainerTemplate
    ? {
        ...(p.customContainerTemplate.registryCredentials
          ? {
              registryCredentials: f.legacyRegistryServer
                ? renameKey(p.customContainerTemplate.registryCredentials, "server", "registryServer")
                : p.customContainerTemplate.registryCredentials,
            }
          : {}),
        containers: p.customContainerTemplate.containers.map((c) => {
          if (f.probes || c.probes === undefined) return c;
          const { probes: _probes, ...rest } = c;
          return rest;
        }),
        ingress: p.customContainerTemplate.ingress,
      }
    : undefined;

  const properties: Record<string, unknown> = {
    ...(p.environmentId === undefined ? {} : { environmentId: p.environmentId }),
    containerType: p.containerType,
    poolManagementType: p.poolManagementType,
    nodeCount: p.provisioningState === "Succeeded" ? 1 : 0,
    scaleConfiguration: p.scaleConfiguration,
    secrets: p.secrets.map((s) => ({ name: s.name })),
    dynamicPoolConfiguration: f.legacyDynamicPool
      ? {
          executionType: lc.lifecycleType,
          ...(lc.cooldownPeriodInSeconds === undefined
            ? {}
            : { cooldownPeriodInSeconds: lc.cooldownPeriodInSeconds }),
        }
      : { lifecycleConfiguration: lc },
    ...(template ? { customContainerTemplate: template } : {}),
    sessionNetworkConfiguration: p.sessionNetworkConfiguration,
    poolManagementEndpoint: endpoint,
    provisioningState: p.provisioningState,
    ...(f.identity && p.managedIdentitySettings
      ? { managedIdentitySettings: p.managedIdentitySettings }
      : {}),
    ...(f.mcp && p.mcpServerSettings
      ? {
          mcpServerSettings: {
            ...p.mcpServerSettings,
            // Read-only, and only while enabled: the data plane serves it then (dataplane/mcp-routes.ts).
            ...(p.mcpServerSettings.isMcpServerEnabled ? { mcpServerEndpoint: `${endpoint}/mcp` } : {}),
          },
        }
      : {}),
  };

  return {
    id: poolResourceId(pool),
    name: pool.name,
    type: "Microsoft.App/sessionPools",
    location: doc.location,
    tags: doc.tags,
    ...(f.identity && doc.identity ? { identity: doc.identity } : {}),
    systemData: doc.systemData,
    properties,
  };
}

function renameKey<T extends object>(obj: T, from: string, to: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k === from ? to : k, v]));
}
