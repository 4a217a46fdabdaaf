// The shape of a session pool as clients send it, every api-version at once: legacy fields are allowed and
// folded into the canonical (newest) shape by pool-canonical.ts. Ranges that depend on other fields or on
// server settings live in pool-validation.ts.
import Type, { type Static } from "typebox";

const str = (options: Record<string, unknown> = {}) => Type.String(options);
const int = (options: Record<string, unknown> = {}) => Type.Integer(options);
const opt = Type.Optional;
const oneOf = (...values: string[]) => Type.Union(values.map((v) => Type.Literal(v)));

export const CONTAINER_TYPES = ["PythonLTS", "CustomContainer", "NodeLTS", "Shell", "GpuBase"] as const;

const EnvironmentVar = Type.Object({
  name: str({ minLength: 1, maxLength: 256 }),
  value: opt(str({ maxLength: 65536 })),
  secretRef: opt(str()),
});

const ProbeHttpGet = Type.Object({
  host: opt(str()),
  httpHeaders: opt(Type.Array(Type.Object({ name: str({ minLength: 1 }), value: str() }))),
  path: opt(str()),
  port: int({ minimum: 1, maximum: 65535 }),
  scheme: opt(oneOf("HTTP", "HTTPS")),
});

const Probe = Type.Object({
  type: oneOf("Liveness", "Startup"),
  httpGet: opt(ProbeHttpGet),
  tcpSocket: opt(Type.Object({ host: opt(str()), port: int({ minimum: 1, maximum: 65535 }) })),
  failureThreshold: opt(int({ minimum: 1, maximum: 10 })),
  initialDelaySeconds: opt(int({ minimum: 1, maximum: 60 })),
  periodSeconds: opt(int({ minimum: 1, maximum: 240 })),
  successThreshold: opt(int({ minimum: 1, maximum: 1 })),
  terminationGracePeriodSeconds: opt(int({ minimum: 0, maximum: 3600 })),
  timeoutSeconds: opt(int({ minimum: 1, maximum: 240 })),
});

const Container = Type.Object({
  image: opt(str({ maxLength: 1024 })),
  name: opt(str({ maxLength: 63 })),
  command: opt(Type.Array(str())),
  args: opt(Type.Array(str())),
  env: opt(Type.Array(EnvironmentVar)),
  resources: opt(Type.Object({ cpu: opt(Type.Number()), memory: opt(str()) })),
  probes: opt(Type.Array(Probe)),
});

const RegistryCredentials = Type.Object({
  server: opt(str()),
  /** 2024-02-02-preview spelling. */
  registryServer: opt(str()),
  username: opt(str()),
  passwordSecretRef: opt(str()),
  identity: opt(str()),
});

const CustomContainerTemplate = Type.Object({
  registryCredentials: opt(Type.Union([RegistryCredentials, Type.Null()])),
  containers: opt(Type.Array(Container)),
  ingress: opt(Type.Object({ targetPort: opt(int({ minimum: 1, maximum: 65535 })) })),
});

const LifecycleConfiguration = Type.Object({
  lifecycleType: opt(oneOf("Timed", "OnContainerExit")),
  cooldownPeriodInSeconds: opt(int()),
  maxAlivePeriodInSeconds: opt(int()),
});

const DynamicPoolConfiguration = Type.Object({
  lifecycleConfiguration: opt(LifecycleConfiguration),
  /** 2024-02-02-preview .. 2024-10-02-preview spelling. */
  executionType: opt(oneOf("Timed", "OnContainerExit")),
  cooldownPeriodInSeconds: opt(int()),
});

const ScaleConfiguration = Type.Object({
  maxConcurrentSessions: opt(int()),
  readySessionInstances: opt(int()),
});

const Secret = Type.Object({ name: str(), value: opt(str({ maxLength: 65536 })) });

const Identity = Type.Object({
  type: oneOf("None", "SystemAssigned", "UserAssigned", "SystemAssigned,UserAssigned"),
  userAssignedIdentities: opt(Type.Record(Type.String(), Type.Union([Type.Object({}), Type.Null()]))),
});

const ManagedIdentitySetting = Type.Object({
  identity: str({ minLength: 1 }),
  lifecycle: opt(oneOf("None", "Main", "Init", "All")),
});

const McpServerSettings = Type.Object({
  isMcpServerEnabled: opt(Type.Boolean()),
  isMcpServerApiKeyDisabled: opt(Type.Boolean()),
});

export const PoolProperties = Type.Object({
  environmentId: opt(str()),
  containerType: opt(oneOf(...CONTAINER_TYPES)),
  poolManagementType: opt(oneOf("Dynamic", "Manual")),
  scaleConfiguration: opt(ScaleConfiguration),
  secrets: opt(Type.Array(Secret)),
  dynamicPoolConfiguration: opt(DynamicPoolConfiguration),
  customContainerTemplate: opt(Type.Union([CustomContainerTemplate, Type.Null()])),
  sessionNetworkConfiguration: opt(Type.Object({ status: opt(oneOf("EgressEnabled", "EgressDisabled")) })),
  managedIdentitySettings: opt(Type.Array(ManagedIdentitySetting)),
  mcpServerSettings: opt(McpServerSettings),
});

export const PoolBody = Type.Object({
  location: opt(str()),
  tags: opt(Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()])),
  identity: opt(Type.Union([Identity, Type.Null()])),
  properties: opt(PoolProperties),
});

export type PoolBodyInput = Static<typeof PoolBody>;
export type ContainerInput = Static<typeof Container>;
export type ProbeInput = Static<typeof Probe>;
