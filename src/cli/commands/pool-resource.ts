// A session pool as the management API returns it, typed as far as the CLI reads it (the server's own types are
// not the CLI's to import: it speaks to the server over HTTP only).

export interface Container {
  name?: string;
  image?: string;
  env?: { name: string; value?: string; secretRef?: string }[];
  command?: string[];
  args?: string[];
  resources?: { cpu?: number; memory?: string };
  [key: string]: unknown;
}
export interface Template {
  containers?: Container[];
  ingress?: { targetPort?: number };
  registryCredentials?: { server?: string; username?: string; passwordSecretRef?: string; identity?: string };
}

/** The pool as GET returns it: the parts the CLI reads. */
export interface PoolResource {
  id?: string;
  name?: string;
  location?: string;
  identity?: { type?: string; userAssignedIdentities?: Record<string, unknown> };
  properties?: {
    containerType?: string;
    environmentId?: string;
    provisioningState?: string;
    poolManagementEndpoint?: string;
    scaleConfiguration?: { maxConcurrentSessions?: number; readySessionInstances?: number };
    secrets?: { name: string }[];
    dynamicPoolConfiguration?: {
      lifecycleConfiguration?: {
        lifecycleType?: string;
        cooldownPeriodInSeconds?: number;
        maxAlivePeriodInSeconds?: number;
      };
    };
    customContainerTemplate?: Template;
    sessionNetworkConfiguration?: { status?: string };
  };
}
