// Which OCI runtime sandboxes run under: gVisor (runsc) by default where the engine has it, runc otherwise, or
// a runtime the operator names. Knows runtimes and their flags, nothing of pools: core asks for "isolated" (no
// network) and "networked" sandboxes.
import { RuntimeConfigError } from "./errors.ts";
import { GVISOR_GUEST_SECCOMP } from "./gvisor-seccomp.ts";

/** A runtime the engine has registered, with the arguments it passes to it. */
export interface EngineRuntime {
  name: string;
  args: string[];
}

/** What `--sandbox-runtime` asks for: "auto" (gVisor when the engine has it, else runc), "runc", "runsc", or
 * the engine name of another OCI runtime (e.g. "kata-runtime"). */
export type RuntimeChoice = string;

export interface SandboxRuntimes {
  /** "runsc" (gVisor), "runc", or the other runtime's name: what /healthz, /metrics and the labels say. */
  name: string;
  /** The engine runtime for sandboxes without a network; undefined: the engine's default (runc). */
  isolated: string | undefined;
  /** The engine runtime for networked sandboxes (EgressEnabled pools, custom containers). */
  networked: string | undefined;
  /** Why networked sandboxes cannot run under this runtime here; undefined when they can. */
  networkedUnavailable: string | undefined;
  /** Said once at start when "auto" settles for less than gVisor. */
  warning: string | undefined;
  /**
   * Host pids the runtime itself takes in each sandbox's pids cgroup, added to the sandbox's own limit: gVisor's
   * kernel and file gofer run there (about 40 threads idle), and a limit meant for the session's processes must
   * not starve them.
   */
  pidsOverhead: number;
  /** An OCI seccomp profile the runtime applies to the sandbox's processes; the engine's default when absent. */
  seccompProfile: string | undefined;
  /**
   * Whether a PythonLTS sandbox's agent forks the interpreter from itself (sandbox-agent/kernel_process.py) rather
   * than starting a second Python. Measured on the development machine: under runc an idle session holds 2.1 MiB
   * less and starts 20 ms sooner; under gVisor it starts sooner too, but holds 2.3 MiB more (the Sentry's
   * copy-on-write keeps less shared), so there the interpreter is started afresh.
   */
  forkInterpreter: boolean;
}

/** Measured: an idle gVisor sandbox holds 38 host pids; the rest is headroom for its threads under load. */
const GVISOR_PIDS_OVERHEAD = 64;

/** The gVisor runtime names scripts/setup.sh registers: one without a network, one on the container's own. */
export const GVISOR = "runsc";
export const GVISOR_NETWORKED = "runsc-net";

const RUNC: SandboxRuntimes = {
  name: "runc",
  isolated: undefined,
  networked: undefined,
  networkedUnavailable: undefined,
  warning: undefined,
  pidsOverhead: 0,
  seccompProfile: undefined,
  forkInterpreter: true,
};

/** A runsc flag's value ("--host-uds=open", "-host-uds open"), or undefined when not given. */
function flag(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!.replace(/^--?/, "-");
    if (arg === `-${name}`)
      return args[i + 1] === undefined || args[i + 1]!.startsWith("-") ? "true" : args[i + 1];
    if (arg.startsWith(`-${name}=`)) return arg.slice(name.length + 2);
  }
  return undefined;
}

/**
 * Why a registered gVisor runtime cannot carry our sandboxes, or undefined when it can. The agent connects to a
 * socket the server made on the host, which gVisor allows only with host-uds open (or the older
 * fsgofer-host-uds); and on this kind of host gVisor's own network stack refuses Docker's namespaces, so it
 * needs --network=none (no network) or --network=host (the container's own namespace, for networked sandboxes).
 */
function gvisorProblem(runtime: EngineRuntime, networked: boolean): string | undefined {
  const uds = flag(runtime.args, "host-uds");
  const legacyUds = flag(runtime.args, "fsgofer-host-uds");
  if (!(uds === "open" || uds === "all" || legacyUds === "true")) {
    return `the engine's runtime '${runtime.name}' lacks --host-uds=open, without which a sandbox's agent cannot reach the server`;
  }
  if (flag(runtime.args, "oci-seccomp") !== "true") {
    return `the engine's runtime '${runtime.name}' lacks --oci-seccomp, without which a session's processes are not filtered by a seccomp profile inside gVisor`;
  }
  const network = flag(runtime.args, "network");
  const allowed = networked ? ["host"] : ["none", "host"];
  if (network === undefined || !allowed.includes(network)) {
    return `the engine's runtime '${runtime.name}' needs --network=${networked ? "host" : "none"} (it has ${network === undefined ? "no --network" : `--network=${network}`}): gVisor's own network stack cannot start in the engine's network namespaces here`;
  }
  return undefined;
}

const SETUP_HINT = "scripts/setup.sh installs gVisor from Debian and registers it with the engine";

/** Settles `choice` against what the engine has; RuntimeConfigError (one clear line) when it cannot be met. */
export function chooseSandboxRuntimes(choice: RuntimeChoice, available: EngineRuntime[]): SandboxRuntimes {
  const byName = new Map(available.map((r) => [r.name, r]));
  if (choice === "runc") return RUNC;
  if (choice === "auto" || choice === GVISOR) {
    const gvisor = byName.get(GVISOR);
    const problem =
      gvisor === undefined ? `the engine has no runtime named '${GVISOR}'` : gvisorProblem(gvisor, false);
    if (problem !== undefined) {
      if (choice === GVISOR)
        throw new RuntimeConfigError(`--sandbox-runtime runsc: ${problem}; ${SETUP_HINT}.`);
      return {
        ...RUNC,
        warning: `sandboxes run under runc and share the host's kernel: ${problem} (${SETUP_HINT}, or pass --sandbox-runtime runc to say runc is meant)`,
      };
    }
    const networked = byName.get(GVISOR_NETWORKED);
    const networkedProblem =
      networked === undefined
        ? `the engine has no runtime named '${GVISOR_NETWORKED}' (runsc --network=host --host-uds=open)`
        : gvisorProblem(networked, true);
    return {
      name: GVISOR,
      isolated: GVISOR,
      networked: networkedProblem === undefined ? GVISOR_NETWORKED : undefined,
      networkedUnavailable:
        networkedProblem === undefined
          ? undefined
          : `under gVisor, networked sandboxes need ${networkedProblem}; ${SETUP_HINT}`,
      warning: undefined,
      pidsOverhead: GVISOR_PIDS_OVERHEAD,
      seccompProfile: GVISOR_GUEST_SECCOMP,
      forkInterpreter: false,
    };
  }
  if (!byName.has(choice)) {
    throw new RuntimeConfigError(
      `--sandbox-runtime ${choice}: the engine has no runtime of that name (it has ${[...byName.keys()].join(", ") || "none listed"}).`,
    );
  }
  return {
    name: choice,
    isolated: choice,
    networked: choice,
    networkedUnavailable: undefined,
    warning: undefined,
    pidsOverhead: 0,
    seccompProfile: undefined,
    forkInterpreter: true,
  };
}
