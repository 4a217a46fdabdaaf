// Host firewall rules that keep networked sandboxes away from the host, the control plane, each other and
// private ranges. Docker's own rules only govern forwarded traffic; a sandbox talking to the host itself
// (its bridge gateway, or any host address) goes through INPUT, which Docker leaves open.
import { execFile } from "node:child_process";
import { SandboxCreateError } from "../../errors.ts";
import type { DockerDriverLogger } from "./docker-driver.ts";

const COMMENT = ["-m", "comment", "--comment", "sessionpool"];
const NOT_ESTABLISHED = ["-m", "conntrack", "!", "--ctstate", "ESTABLISHED,RELATED"];
const RUN_TIMEOUT_MS = 10_000;

/** Destinations an egress sandbox may never open a connection to: private, shared, link-local and reserved. */
export const BLOCKED_EGRESS_RANGES = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "224.0.0.0/4",
  "240.0.0.0/4",
];

export interface HostFirewallOptions {
  iptables: string;
  ip6tables: string;
  /** Resolvers egress sandboxes may query on port 53 even inside a blocked range (e.g. the host's own). */
  egressDnsServers: string[];
  logger: DockerDriverLogger;
}

interface RunResult {
  code: number | string;
  stderr: string;
}

/** One bridge's rules in one chain, in the order they must appear at the top of that chain. */
interface RuleGroup {
  binary: string;
  chain: string;
  rules: string[][];
}

export class HostFirewall {
  readonly #options: HostFirewallOptions;
  #ipv4Check: Promise<void> | undefined;
  #ipv6Check: Promise<boolean> | undefined;

  constructor(options: HostFirewallOptions) {
    this.#options = options;
  }

  /** Installs (idempotently) every rule for one sandbox bridge; rejects when the host cannot enforce them. */
  async protectBridge(bridge: string, kind: "internal" | "egress"): Promise<void> {
    await this.#checkIpv4();
    const { iptables, ip6tables, egressDnsServers } = this.#options;
    const fromBridge = ["-i", bridge];
    const groups: RuleGroup[] = [
      // The server can still connect to a sandbox's port: the replies are ESTABLISHED.
      {
        binary: iptables,
        chain: "INPUT",
        rules: [[...fromBridge, ...NOT_ESTABLISHED, ...COMMENT, "-j", "DROP"]],
      },
    ];
    const forward: string[][] = [];
    if (kind === "egress") {
      for (const server of egressDnsServers) {
        for (const protocol of ["udp", "tcp"]) {
          forward.push([
            ...fromBridge,
            "-d",
            `${server}/32`,
            "-p",
            protocol,
            "--dport",
            "53",
            ...COMMENT,
            "-j",
            "RETURN",
          ]);
        }
      }
    }
    // Docker drops bridge-to-itself traffic when ICC is off; this holds even if the network was made without it.
    forward.push([...fromBridge, "-o", bridge, ...COMMENT, "-j", "DROP"]);
    if (kind === "egress") {
      for (const range of BLOCKED_EGRESS_RANGES) {
        forward.push([...fromBridge, "-d", range, ...NOT_ESTABLISHED, ...COMMENT, "-j", "DROP"]);
      }
    }
    groups.push({ binary: iptables, chain: "DOCKER-USER", rules: forward });

    // Sandbox networks carry no IPv6 (the engine disables it inside the sandbox); drop any that shows up anyway.
    if (await this.#checkIpv6()) {
      groups.push(
        { binary: ip6tables, chain: "INPUT", rules: [[...fromBridge, ...COMMENT, "-j", "DROP"]] },
        {
          binary: ip6tables,
          chain: "FORWARD",
          rules: [
            [...fromBridge, ...COMMENT, "-j", "DROP"],
            ["-o", bridge, ...COMMENT, "-j", "DROP"],
          ],
        },
      );
    }
    let changed = false;
    for (const group of groups) {
      if (await this.#ensureGroup(group)) changed = true;
    }
    if (changed) this.#options.logger.info({ bridge, kind }, "installed sessionpool firewall rules");
  }

  #checkIpv4(): Promise<void> {
    this.#ipv4Check ??= (async () => {
      // One call proves the binary exists, we may use it, and the engine manages iptables (it owns DOCKER-USER).
      const result = await run(this.#options.iptables, ["-w", "5", "-S", "DOCKER-USER"]);
      if (result.code === 0) return;
      const reason =
        result.code === "ENOENT"
          ? `'${this.#options.iptables}' is not installed`
          : `'${this.#options.iptables} -S DOCKER-USER' failed (${result.code}): ${result.stderr.trim()}` +
            " (the server must run as root next to an engine that manages iptables)";
      this.#options.logger.warn(
        { reason },
        "cannot install sandbox firewall rules: networked sandboxes are refused",
      );
      throw new SandboxCreateError(
        `networked sandboxes need host firewall rules to keep them away from the host and each other, and they ` +
          `cannot be installed: ${reason}; use network "none" or fix the host`,
      );
    })();
    // A failed check is retried on the next create (the operator may have fixed the host meanwhile).
    this.#ipv4Check.catch(() => {
      this.#ipv4Check = undefined;
    });
    return this.#ipv4Check;
  }

  #checkIpv6(): Promise<boolean> {
    this.#ipv6Check ??= run(this.#options.ip6tables, ["-w", "5", "-S", "INPUT"]).then((result) => {
      if (result.code !== 0) {
        this.#options.logger.warn(
          { code: result.code, stderr: result.stderr.trim() },
          "ip6tables is unusable: relying on the engine disabling IPv6 inside sandboxes",
        );
      }
      return result.code === 0;
    });
    return this.#ipv6Check;
  }

  /** Makes `group.rules` the top of its chain, in order. Returns true when anything had to change. */
  async #ensureGroup(group: RuleGroup): Promise<boolean> {
    const present: boolean[] = [];
    for (const rule of group.rules) present.push(await this.#has(group, rule));
    if (present.every(Boolean)) return false;
    // Something is missing: take ours out and insert the whole group again, so the order (DNS exceptions
    // before the drops) is exactly as listed.
    for (const [index, rule] of group.rules.entries()) {
      if (present[index]) await this.#must(group.binary, ["-w", "5", "-D", group.chain, ...rule]);
    }
    for (const rule of [...group.rules].reverse()) {
      await this.#must(group.binary, ["-w", "5", "-I", group.chain, "1", ...rule]);
    }
    return true;
  }

  async #has(group: RuleGroup, rule: string[]): Promise<boolean> {
    const result = await run(group.binary, ["-w", "5", "-C", group.chain, ...rule]);
    return result.code === 0;
  }

  async #must(binary: string, args: string[]): Promise<void> {
    const result = await run(binary, args);
    if (result.code !== 0) {
      throw new SandboxCreateError(
        `could not install a sandbox firewall rule ('${binary} ${args.join(" ")}' failed with ${result.code}: ` +
          `${result.stderr.trim()}); networked sandboxes are refused until it can be installed`,
      );
    }
  }
}

function run(binary: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(binary, args, { timeout: RUN_TIMEOUT_MS, encoding: "utf8" }, (err, _stdout, stderr) => {
      if (!err) return resolve({ code: 0, stderr });
      const code = (err as NodeJS.ErrnoException).code;
      resolve({
        code: typeof code === "string" || typeof code === "number" ? code : 1,
        stderr: stderr || err.message,
      });
    });
  });
}
