// The Microsoft.App api-versions that define sessionPools, and which shape each one speaks on the wire.

export interface ApiVersionFeatures {
  /** dynamicPoolConfiguration {executionType, cooldownPeriodInSeconds} instead of lifecycleConfiguration. */
  legacyDynamicPool: boolean;
  /** registryCredentials.registryServer instead of .server. */
  legacyRegistryServer: boolean;
  identity: boolean;
  probes: boolean;
  mcp: boolean;
}

const LEGACY = {
  legacyDynamicPool: true,
  legacyRegistryServer: false,
  identity: true,
  probes: false,
  mcp: false,
};
const STABLE = {
  legacyDynamicPool: false,
  legacyRegistryServer: false,
  identity: true,
  probes: false,
  mcp: false,
};

export const ARM_API_VERSIONS: Readonly<Record<string, ApiVersionFeatures>> = {
  "2024-02-02-preview": { ...LEGACY, legacyRegistryServer: true, identity: false },
  "2024-08-02-preview": LEGACY,
  "2024-10-02-preview": LEGACY,
  "2025-01-01": STABLE,
  // Azure's MCP documentation and tutorials use 2025-02-02-preview for mcpServerSettings and the credential actions.
  "2025-02-02-preview": { ...STABLE, probes: true, mcp: true },
  "2025-07-01": STABLE,
  "2025-10-02-preview": { ...STABLE, probes: true, mcp: true },
  "2026-01-01": STABLE,
  "2026-07-01": { ...STABLE, probes: true },
};

export const SUPPORTED_ARM_API_VERSIONS = Object.keys(ARM_API_VERSIONS);
