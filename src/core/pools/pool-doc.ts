// The canonical session pool: the newest ARM shape, with defaults applied and no secret values. This is what the
// store keeps and what core reasons about; http/arm renders it in the shape of the caller's api-version.

export type ContainerType = "PythonLTS" | "CustomContainer" | "NodeLTS" | "Shell" | "GpuBase";
export type LifecycleType = "Timed" | "OnContainerExit";
export type ProvisioningState = "InProgress" | "Succeeded" | "Failed" | "Canceled" | "Deleting";

export interface EnvVar {
  name: string;
  value?: string;
  secretRef?: string;
}

export interface Probe {
  type: "Liveness" | "Startup";
  httpGet?: {
    host?: string;
    httpHeaders?: { name: string; value: string }[];
    path?: string;
    port: number;
    scheme?: "HTTP" | "HTTPS";
  };
  tcpSocket?: { host?: string; port: number };
  failureThreshold?: number;
  initialDelaySeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  terminationGracePeriodSeconds?: number;
  timeoutSeconds?: number;
}

export interface SessionContainer {
  image: string;
  name: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  resources?: { cpu?: number; memory?: string };
  probes?: Probe[];
}

export interface RegistryCredentials {
  server?: string;
  username?: string;
  passwordSecretRef?: string;
  identity?: string;
}

export interface CustomContainerTemplate {
  registryCredentials?: RegistryCredentials;
  containers: SessionContainer[];
  ingress: { targetPort: number };
}

export interface Identity {
  type: "None" | "SystemAssigned" | "UserAssigned" | "SystemAssigned,UserAssigned";
  principalId?: string;
  tenantId?: string;
  userAssignedIdentities?: Record<string, { principalId: string; clientId: string }>;
}

export interface PoolProperties {
  environmentId?: string;
  containerType: ContainerType;
  poolManagementType: "Dynamic" | "Manual";
  scaleConfiguration: { maxConcurrentSessions: number; readySessionInstances: number };
  /** Names only; values live sealed in the store. */
  secrets: { name: string }[];
  dynamicPoolConfiguration: {
    lifecycleConfiguration: {
      lifecycleType: LifecycleType;
      cooldownPeriodInSeconds?: number;
      maxAlivePeriodInSeconds?: number;
    };
  };
  customContainerTemplate?: CustomContainerTemplate;
  sessionNetworkConfiguration: { status: "EgressEnabled" | "EgressDisabled" };
  managedIdentitySettings?: { identity: string; lifecycle: "None" | "Main" | "Init" | "All" }[];
  mcpServerSettings?: { isMcpServerEnabled: boolean; isMcpServerApiKeyDisabled: boolean };
  provisioningState: ProvisioningState;
  /** Why the last provisioning failed, when it did. */
  provisioningError?: { code: string; message: string };
}

export interface SystemData {
  createdBy: string;
  createdByType: string;
  createdAt: string;
  lastModifiedBy: string;
  lastModifiedByType: string;
  lastModifiedAt: string;
}

export interface PoolDoc {
  location: string;
  tags: Record<string, string>;
  identity?: Identity;
  properties: PoolProperties;
  systemData: SystemData;
}

/** Where a pool lives: the ARM path segments, as the caller first spelled them. */
export interface PoolRef {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
}

/** A stored pool's document, as core wrote it (the store keeps it as JSON and knows nothing of its shape). */
export function poolDocOf(pool: { doc: object }): PoolDoc {
  return pool.doc as PoolDoc;
}

export function poolKey(ref: PoolRef): string {
  return `${ref.subscriptionId}/${ref.resourceGroup}/${ref.name}`.toLowerCase();
}

export function poolResourceId(ref: PoolRef): string {
  return `/subscriptions/${ref.subscriptionId}/resourceGroups/${ref.resourceGroup}/providers/Microsoft.App/sessionPools/${ref.name}`;
}

/** "East US" -> "eastus", the form ARM uses in operation URLs. */
export function normalizeLocation(location: string): string {
  return location.replace(/\s+/g, "").toLowerCase();
}
